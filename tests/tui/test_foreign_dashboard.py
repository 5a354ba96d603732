"""A foreign source's migration on the Start screen and its dashboard: status, lag or refresh,
verify with the differing ids, start and stop of the worker, help; pictures at 80x24 and 120x34."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from tui_fakes import FOREIGN_ID, FakeServices, foreign_migration
from tui_support import FIXED_WALL_CLOCK, make_app, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.screens.foreign_dashboard import ForeignDashboardScreen
from pgtide.screens.start import StartScreen
from pgtide.widgets.modals import ConfirmModal, InfoModal, NamePrompt


def text(app: PgtideApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def open_from_start(pilot: Pilot[Any]) -> ForeignDashboardScreen:
    app = pilot.app
    await settle(pilot)
    assert isinstance(app.screen, StartScreen)
    await pilot.press("o")
    await wait_until(pilot, lambda: isinstance(app.screen, ForeignDashboardScreen), what="the foreign dashboard")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, ForeignDashboardScreen)
    return screen


def services_with(**kwargs: Any) -> tuple[FakeServices, Any]:
    fake = FakeServices()
    migration = fake.add_foreign(foreign_migration(**kwargs))
    return fake, migration


async def test_start_lists_the_foreign_migration_and_o_opens_its_dashboard() -> None:
    fake, migration = services_with()
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        row = [str(cell) for cell in app.screen.query_one("#migrations", DataTable).get_row_at(0)]
        assert row[0] == FOREIGN_ID and "shop streaming" in row[1] and row[2] == "running (foreign-sync)"
        assert "mariadb://app@old-db/shop → postgresql://app@new-db:5432/shop" in row[3]
        screen = await open_from_start(pilot)
        assert screen.model.plan is migration.plan and migration.polls >= 1
        endpoints = text(app, "#fdash-endpoints")
        assert "Source mariadb://app@old-db/shop" in endpoints and "Target postgresql://app@new-db:5432/shop" in endpoints
        lines = text(app, "#fdash-lines")
        assert "● streaming" in lines and "Sync stream: the source's change log" in lines and "running (pid 4242)" in lines
        assert "Lag 0.4 s" in lines and "Position mysql-bin.000003:91822" in lines
        # The worker's logged lag, then this poll's sample.
        assert list(screen.model.lag_history) == [0.0, 1.5, 3.0, 0.8, 0.4, 0.4]
        assert "0 … 3.0 s" in text(app, "#fdash-graph-label")
        table = app.screen.query_one("#fdash-tables", DataTable)
        assert table.row_count == 3
        assert [str(c) for c in table.get_row("orders")][:3] == ["orders", "✔ copied", "20,000"]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, StartScreen)


async def test_a_refresh_sync_shows_the_last_refresh_and_its_age() -> None:
    fake, _ = services_with(mode="refresh", refresh_every=30.0, last_refresh_at=FIXED_WALL_CLOCK.timestamp() - 12)
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await open_from_start(pilot)
        lines = text(app, "#fdash-lines")
        assert "Sync refresh every 30s" in lines, lines
        assert "Last refresh 3 inserted, 1 updated, 0 deleted · 12s ago" in lines, lines
        assert "Lag" not in lines


async def test_verify_names_the_differing_ids() -> None:
    fake, migration = services_with(differing=True)
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_from_start(pilot)
        assert "Not verified yet" in text(app, "#fdash-verify")
        await pilot.press("v")
        await wait_until(pilot, lambda: screen.model.verify_state == "done", what="verify")
        await settle(pilot)
        assert migration.verified == 1
        assert "1 of 3 table(s) differ" in text(app, "#fdash-verify")
        differences = text(app, "#fdash-differences")
        assert "orders: source 20,000 rows, target 19,998; 2 missing on the target, 0 extra, 1 different" \
            in differences
        assert "ids missing 17, 18 · different 4" in differences
        table = app.screen.query_one("#fdash-tables", DataTable)
        assert str(table.get_row("orders")[3]) == "✖ 3 differ"
        assert str(table.get_row("customers")[3]) == "✔ match"


async def test_stop_asks_first_and_cancelling_changes_nothing() -> None:
    fake, migration = services_with()
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_from_start(pilot)
        await pilot.press("x")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        assert "stops applying the changes of mariadb://app@old-db/shop to postgresql://app@new-db:5432/shop" \
            in modal.question
        assert "The target keeps its tables and every row" in modal.question
        await pilot.press("n")
        await settle(pilot)
        assert migration.stopped == 0 and screen.model.worker_alive
        assert app.screen is screen
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(pilot, lambda: not screen.model.worker_alive and screen.model.action is None,
                         what="the worker to stop")
        await settle(pilot)
        assert migration.stopped == 1
        assert "stopped, exit (0)" in text(app, "#fdash-lines")
        assert "no worker keeps the target in sync: s starts one" in text(app, "#fdash-lines")
        assert screen.check_action("stop_worker", ()) is False and screen.check_action("start_sync", ())


async def test_a_source_that_cannot_stream_is_offered_a_refresh_interval() -> None:
    fake, migration = services_with(mode="copy", worker="none", can_stream=False)
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_from_start(pilot)
        assert "copy only (no sync started)" in text(app, "#fdash-lines")
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, NamePrompt), what="the refresh question")
        prompt = app.screen
        assert isinstance(prompt, NamePrompt)
        assert "binlog_format is STATEMENT" in prompt.hint and "Cancel starts nothing" in prompt.hint
        await pilot.press("escape")
        await settle(pilot)
        assert migration.started == [] and app.screen is screen
        assert screen.model.action is None and screen.check_action("start_sync", ())
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, NamePrompt), what="the refresh question")
        await pilot.press("enter")  # the offered 30s
        await wait_until(pilot, lambda: screen.model.worker_alive, what="the refreshing worker")
        assert migration.started == ["refresh"] and migration.plan.refresh_every == 30.0


async def test_start_sync_starts_the_worker() -> None:
    fake, migration = services_with(mode="copy", worker="none")
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_from_start(pilot)
        await pilot.press("s")
        await wait_until(pilot, lambda: screen.model.worker_alive, what="the worker to run")
        await settle(pilot)
        assert migration.started == ["stream"]
        assert "running (pid 5151)" in text(app, "#fdash-lines")


async def test_help_opens_on_the_foreign_dashboard() -> None:
    fake, _ = services_with()
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await open_from_start(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, InfoModal)
        assert modal.info_title == "Help: Dashboard"
        shown = str(modal.body)
        assert "x stops the worker" in shown and "Stop worker" in shown and "Verify now" in shown


@pytest.mark.parametrize("size", [(80, 24), (120, 34)], ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_foreign_dashboard_after_a_verify_with_differences(snap_compare: Any, size: tuple[int, int]) -> None:
    fake, _ = services_with(differing=True)

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_from_start(pilot)
        await pilot.press("v")
        await wait_until(pilot, lambda: screen.model.verify_state == "done", what="verify")
        await settle(pilot)

    assert snap_compare(make_app(services=fake, poll_seconds=3600), terminal_size=size, run_before=run_before)
