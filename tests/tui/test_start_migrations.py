"""The Start screen lists the recorded migrations (hidden while there are none) and opens one."""

from __future__ import annotations

from textual.widgets import DataTable
from tui_fakes import FakeServices
from tui_support import make_app, settle, wait_until

from pgtide.screens.dashboard import DashboardScreen


async def test_recorded_migrations_are_listed_and_o_opens_the_dashboard() -> None:
    services = FakeServices(lag=(0,))
    services.recorded_migrations = [{
        "id": "4ace3d98", "source": "postgresql://app@old-db:5432/shop", "target": "postgresql://app@new-db:5432/shop",
        "databases": {"shop": "streaming"}, "worker": {"state": "alive", "pid": 4242, "command": "init"},
        "recorded_by": "pgtide"}]
    app = make_app(services=services, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        box = app.screen.query_one("#migrations-box")
        assert box.display
        table = app.screen.query_one("#migrations", DataTable)
        assert table.row_count == 1
        row = [str(cell) for cell in table.get_row_at(0)]
        assert row[0] == "4ace3d98" and "shop streaming" in row[1] and row[2] == "running (init)"
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")


async def test_without_recorded_migrations_the_list_is_hidden() -> None:
    app = make_app(services=FakeServices(), poll_seconds=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert not app.screen.query_one("#migrations-box").display
