"""Every screen at 80x24, 120x34 and 160x48, against fixed answers (tests/tui/tui_fakes.py).

Deterministic by construction: no blinking cursor, no clock, fixed host names, versions and
sizes from the fakes, workers finished (or held at a known point) before the picture. Update
with ``pytest tests/tui --snapshot-update`` and look at every changed SVG before committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, ProgressBar, Select
from textual.widgets._progress_bar import Bar
from tui_fakes import FakeServices, demo_plan, wide_catalog, wizard_state
from tui_support import SNAPSHOT_SIZES, make_app, open_pick, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.core.infra.errors import ConnectError
from pgtide.screens.filters import FiltersScreen
from pgtide.screens.state import TimeFilterChoice
from pgtide.widgets.table_picker import TablePicker

Snap = Callable[..., bool]
Size = tuple[int, int]

#: Every test below takes a picture at each size.
pytestmark = pytest.mark.parametrize("size", SNAPSHOT_SIZES, ids=lambda size: f"{size[0]}x{size[1]}")


def app_for(fake: FakeServices, **kwargs: Any) -> PgtideApp:
    kwargs.setdefault("poll_seconds", 3600)  # one poll, then none: the picture must not move
    return make_app(services=fake, **kwargs)


def snap(snap_compare: Snap, app: PgtideApp, run_before: Callable[[Pilot[Any]], Awaitable[None]],
         size: Size) -> bool:
    return snap_compare(app, terminal_size=size, run_before=run_before)


async def to_filters(pilot: Pilot[Any]) -> None:
    app = await open_pick(pilot, wizard_state())
    app.show_filters()
    await settle(pilot)


def test_start(snap_compare: Snap, size: Size) -> None:
    fake = FakeServices()
    fake.save_profile("prod-move", demo_plan())
    fake.save_profile("staging-refresh", demo_plan())

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    assert snap(snap_compare, app_for(fake), run_before, size)


def test_connect_tested_one_ok_one_failing(snap_compare: Snap, size: Size) -> None:
    secret = "never-on-screen"

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        state = wizard_state(password=secret)
        state.target_fields.host = "unreachable"
        app.open_wizard(state, ())
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert secret not in app.export_screenshot()

    assert snap(snap_compare, app_for(FakeServices()), run_before, size)


def test_pick(snap_compare: Snap, size: Size) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = await open_pick(pilot, wizard_state())
        picker = app.screen.query_one("#tables", TablePicker)
        picker.table.focus()
        await pilot.press("down", "space")  # leave out audit_log (no primary key)
        await pilot.pause()

    assert snap(snap_compare, app_for(FakeServices()), run_before, size)


def test_pick_ten_thousand_tables_filtered(snap_compare: Snap, size: Size) -> None:
    fake = FakeServices(catalogs={"shop": wide_catalog("shop", 10_000)})

    async def run_before(pilot: Pilot[Any]) -> None:
        app = await open_pick(pilot, wizard_state())
        picker = app.screen.query_one("#tables", TablePicker)
        picker.filter_input.focus()
        await pilot.press(*"tenant_07 events_07")
        await pilot.pause()
        assert picker.matching_count == 50

    assert snap(snap_compare, app_for(fake), run_before, size)


def test_filters_with_time_filter_and_rejected_row_filter(snap_compare: Snap, size: Size) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await to_filters(pilot)
        screen = app.screen
        assert isinstance(screen, FiltersScreen)
        screen.show_table(("shop", "public", "metrics"))
        await pilot.pause()
        screen.query_one("#time-column", Select).value = "recorded_at"
        await settle(pilot)
        screen.show_table(("shop", "public", "orders"))
        await pilot.pause()
        screen.query_one("#row-filter", Input).value = "region = 'eu'"
        screen.apply_row_filter()
        await settle(pilot)

    assert snap(snap_compare, app_for(FakeServices()), run_before, size)


def test_review_blocked_by_a_failed_check(snap_compare: Snap, size: Size) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await to_filters(pilot)
        app.wizard.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "90 days")
        app.show_review()
        await settle(pilot)

    assert snap(snap_compare, app_for(FakeServices()), run_before, size)


def test_run_in_the_data_phase(snap_compare: Snap, size: Size) -> None:
    fake = FakeServices(hold_init=True)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await to_filters(pilot)
        app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
        app.wizard.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "90 days")
        app.show_review()
        await settle(pilot)
        await pilot.press("g")
        # Every event before the hold applied: three tables copied, the other three part-way.
        await wait_until(pilot, lambda: app.migration is not None
                         and len([r for r in app.migration.tables.values() if r.done]) == 3
                         and all(r.done or r.bytes_done for r in app.migration.tables.values()),
                         what="the held copy")
        assert app.migration is not None
        # Throughput and ETA from a pinned clock: 10 s into the data phase.
        app.migration.data_started_at = 100.0
        app.migration.started_at = 95.0
        app.migration.phase_started_at = dict.fromkeys(app.migration.phase_started_at, 100.0)
        app.migration.clock = lambda: 110.0
        app.screen.redraw()  # type: ignore[attr-defined]
        # Textual's Bar rounds its percentage to half cells of its width *when the value is set*:
        # set while the layout was still settling, it kept another rounding. Set it again now.
        progress = app.screen.query_one(ProgressBar)
        progress.query_one(Bar).percentage = progress.percentage
        await pilot.pause()

    app = app_for(fake)
    try:
        assert snap(snap_compare, app, run_before, size)
    finally:
        fake.hold.set()


def test_dashboard_after_verify(snap_compare: Snap, size: Size) -> None:
    fake = FakeServices(lag=(0,))

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        assert app.dashboard is not None
        app.dashboard.lag_history["shop"].extend([40960, 81920, 20480, 4096, 2048, 0, 0, 1024, 0, 0] * 3)
        await pilot.press("v")
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.verify_state == "done",
                         what="verify")
        await settle(pilot)

    assert snap(snap_compare, app_for(fake), run_before, size)


def test_dashboard_verify_found_differences(snap_compare: Snap, size: Size) -> None:
    fake = FakeServices(lag=(0,), differing={("public", "orders"): 2})

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await pilot.press("v")
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.verify_state == "done",
                         what="verify")
        await settle(pilot)

    assert snap(snap_compare, app_for(fake), run_before, size)


def test_error_modal(snap_compare: Snap, size: Size) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.show_error(ConnectError("postgresql://app@old-db:5432/shop: the server rejected the password for user "
                                    "'app'", "Check the password; pgtide also reads it from ~/.pgpass, PGPASSWORD or "
                                    "the OS keyring."))
        await pilot.pause()

    assert snap(snap_compare, app_for(FakeServices()), run_before, size)


def test_help_on_filters(snap_compare: Snap, size: Size) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await to_filters(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap(snap_compare, app_for(FakeServices()), run_before, size)


def test_drop_confirmation(snap_compare: Snap, size: Size) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await to_filters(pilot)
        app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
        app.wizard.options["drop_existing"] = True
        app.show_review()
        await settle(pilot)
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"sho")
        await pilot.pause()

    assert snap(snap_compare, app_for(FakeServices(non_empty_targets=("shop",))), run_before, size)
