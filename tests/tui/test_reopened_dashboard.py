"""A dashboard opened in a new app starts from what the migration's record remembers."""

from __future__ import annotations

import time

from textual.widgets import Static
from tui_fakes import FakeServices, demo_plan
from tui_support import make_app, settle, wait_until


async def test_the_recorded_verify_and_its_time_are_shown() -> None:
    services = FakeServices(lag=(0,))
    services.recorded_verify = {"ok": False, "tables": 7, "missing": 3, "extra": 0, "different": 1,
                                "at": time.time() - 120}
    app = make_app(services=services, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await settle(pilot)
        headline = str(app.screen.query_one("#verify-status", Static).render())
        assert "4 difference(s)" in headline and "from the migration's record" in headline
