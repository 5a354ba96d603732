"""The wizard for a foreign source, against FakeServices: Connect → Pick (its tables) →
Filters (a row filter the source refuses blocks Next with its message; the layout) → Review
(validate's checks; Start waits on an error) → Run (per-table progress) → the dashboard."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static
from tui_fakes import FakeServices, wizard_state
from tui_support import make_app, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.screens.foreign_dashboard import ForeignDashboardScreen
from pgtide.screens.foreign_filters import ForeignFiltersScreen
from pgtide.screens.foreign_pick import ForeignPickScreen
from pgtide.screens.foreign_review import ForeignReviewScreen
from pgtide.screens.foreign_run import ForeignRunScreen
from pgtide.screens.foreign_state import ForeignChoices
from pgtide.widgets.modals import ConfirmModal, InfoModal
from pgtide.widgets.table_picker import TablePicker
from pgtide.widgets.toggles import Choice

SECRET = "s3cret-never-shown"


def screen_text(app: PgtideApp) -> str:
    """What the screen shows, as plain text (the SVG's tags and escapes removed)."""
    svg = app.export_screenshot()
    lines = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    return html.unescape("".join(lines)).replace("\xa0", " ")


def text_of(app: PgtideApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def to_pick(pilot: Pilot[Any], url: str = f"mariadb://app:{SECRET}@old-db:3306/shop") -> PgtideApp:
    """The foreign Pick as Next on Connect opens it (Connect itself: test_foreign_connect.py)."""
    app = pilot.app
    assert isinstance(app, PgtideApp)
    await settle(pilot)
    state = wizard_state()
    source = app.services.parse_foreign(url)
    tables, capture = app.services.foreign_source_tables(source)
    assert state.target is not None
    state.foreign = ForeignChoices.start(source, state.target, tables, capture)
    app.open_wizard(state, ())
    await settle(pilot)
    app.show_foreign_pick()
    await settle(pilot)
    assert isinstance(app.screen, ForeignPickScreen)
    return app


async def to_filters(pilot: Pilot[Any]) -> PgtideApp:
    app = await to_pick(pilot)
    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: isinstance(app.screen, ForeignFiltersScreen), what="the foreign Filters")
    await settle(pilot)
    return app


async def set_filter(pilot: Pilot[Any], app: PgtideApp, table: str, where: str) -> None:
    screen = app.screen
    assert isinstance(screen, ForeignFiltersScreen)
    listing = screen.query_one("#foreign-filter-list", DataTable)
    listing.move_cursor(row=listing.get_row_index(table))
    await settle(pilot)
    assert screen.current == table
    field = screen.query_one("#foreign-row-filter", Input)
    field.value = where
    await pilot.pause()
    field.focus()
    await pilot.press("enter")
    await settle(pilot)


async def to_review(pilot: Pilot[Any]) -> PgtideApp:
    app = await to_filters(pilot)
    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: isinstance(app.screen, ForeignReviewScreen), what="the foreign Review")
    await settle(pilot)
    return app


async def test_pick_lists_the_source_tables_and_keeps_what_is_ticked() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await to_pick(pilot)
        screen = app.screen
        picker = screen.query_one("#foreign-tables", TablePicker)
        assert picker.shown_keys == ("audit_log", "customers", "orders")
        assert picker.selected == {"audit_log", "customers", "orders"}
        shown = screen_text(app)
        assert "~1,200" in shown and "⚠" in shown and "no key: no primary key" in shown, shown
        assert SECRET not in shown
        # Untick audit_log (the highlighted first row): the wizard's choice follows.
        picker.table.focus()
        await pilot.press("space")
        await settle(pilot)
        assert app.wizard.foreign is not None and app.wizard.foreign.picked == {"customers", "orders"}
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignFiltersScreen), what="Filters")
        listing = app.screen.query_one("#foreign-filter-list", DataTable)
        assert [key.value for key in listing.rows] == ["customers", "orders"]
        # The plan the review will build names the one table left out by an include list.
        assert app.wizard.foreign.plan_options()["include"] == ("customers", "orders")


async def test_pick_with_nothing_ticked_does_not_move_on() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await to_pick(pilot)
        picker = app.screen.query_one("#foreign-tables", TablePicker)
        picker.set_selected(())
        assert app.wizard.foreign is not None
        app.wizard.foreign.picked = set()
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ForeignPickScreen)


async def test_a_refused_filter_shows_the_source_message_and_blocks_next() -> None:
    fake = FakeServices()
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await to_filters(pilot)
        await set_filter(pilot, app, "orders", "nosuch > 3")
        assert fake.foreign_filters_checked[-1] == ("orders", "nosuch > 3")
        verdict = text_of(app, "#foreign-filter-verdict")
        assert "✗ orders: MariaDB refuses the row filter: (1054, \"Unknown column 'nosuch' in 'WHERE'\")" in verdict
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ForeignFiltersScreen)
        problem = text_of(app, "#foreign-filters-problem")
        assert "Not moving on: orders: MariaDB refuses the row filter" in problem and "Unknown column 'nosuch'" in problem
        # Fixed: accepted, and Next goes on with the filter in the plan.
        await set_filter(pilot, app, "orders", "amount > 3")
        assert "✓ the source accepts this filter" in text_of(app, "#foreign-filter-verdict")
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignReviewScreen), what="Review")
        await settle(pilot)
        assert "orders: only rows where amount > 3" in str(app.screen.query_one("#foreign-plan-words").render())


async def test_next_checks_a_filter_never_checked_before_moving_on() -> None:
    fake = FakeServices()
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await to_filters(pilot)
        screen = app.screen
        assert isinstance(screen, ForeignFiltersScreen)
        field = screen.query_one("#foreign-row-filter", Input)
        field.value = "detail = 'x' AND missing_col = 1"  # audit_log is highlighted first
        await pilot.pause()
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert fake.foreign_filters_checked == [("audit_log", "detail = 'x' AND missing_col = 1")]
        assert isinstance(app.screen, ForeignFiltersScreen)
        assert "Unknown column 'missing_col'" in text_of(app, "#foreign-filters-problem")


async def test_schema_only_and_the_layout_choice_reach_the_plan() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await to_filters(pilot)
        screen = app.screen
        screen.query_one("#foreign-schema-only").value = True  # audit_log
        await pilot.pause()
        assert screen.query_one("#foreign-row-filter", Input).disabled
        jsonb = screen.query_one("#layout-jsonb", Choice)
        jsonb.value = True
        await settle(pilot)
        choices = app.wizard.foreign
        assert choices is not None
        assert choices.layout == "jsonb"
        options = choices.plan_options()
        assert options["schema_only"] == ("audit_log",) and options["layout"] == "jsonb"
        assert options["target_database"] == "shop"


async def test_a_mongodb_source_offers_jsonb_only() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await to_pick(pilot, "mongodb://old-db:27017/shop")
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignFiltersScreen), what="Filters")
        screen = app.screen
        assert screen.query_one("#layout-typed", Choice).disabled
        assert screen.query_one("#layout-jsonb", Choice).value
        assert "JSON query document" in screen_text(app)


async def test_review_shows_the_checks_and_start_waits_on_an_error() -> None:
    fake = FakeServices()
    fake.foreign_existing = ("orders",)
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await to_review(pilot)
        screen = app.screen
        assert isinstance(screen, ForeignReviewScreen)
        names = [check[1] for check in screen._checks]
        assert "consistency" in names and "change capture" in names and "target tables" in names
        assert screen.query_one("#start", Button).disabled
        assert "✖ 1 error(s)" in text_of(app, "#foreign-review-status")
        assert "already exist on the target" in screen_text(app)
        await pilot.press("g")
        await settle(pilot)
        assert isinstance(app.screen, ForeignReviewScreen) and not fake.foreign_inits
        assert any("1 check(s) failed; the first: target tables" in str(n.message) for n in app._notifications)
        # Replacing them: checked again, no error, and Start asks before dropping.
        screen.query_one("#foreign-drop-existing").value = True
        await settle(pilot)
        assert not screen.query_one("#start", Button).disabled
        assert screen.plan is not None and screen.plan.drop_existing
        await pilot.press("g")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        assert "orders" in app.screen.question and "dropped" in app.screen.question
        await pilot.press("n")
        await settle(pilot)
        assert not fake.foreign_inits


async def test_estimate_counts_rows_and_bytes_of_the_picked_tables() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await to_review(pilot)
        total = text_of(app, "#foreign-estimate-total")
        assert "Total ~23,200 rows, 2.3 MB in 3 table(s)" in total and "3 table(s)" in total, total
        assert app.screen.query_one("#foreign-estimate", DataTable).row_count == 3


async def test_run_shows_progress_per_table_then_opens_the_dashboard() -> None:
    fake = FakeServices()
    fake.foreign_hold.clear()
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await to_review(pilot)
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignRunScreen), what="Run")
        await wait_until(pilot, lambda: app.foreign_run is not None and app.foreign_run.tables["customers"].rows_done
                         > 0, what="progress")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#foreign-run-tables", DataTable)
        assert table.get_cell("audit_log", "state") == "copied"
        assert table.get_cell("customers", "state") == "copying"
        assert table.get_cell("customers", "rows") == "600"
        assert screen.query_one("#dashboard", Button).disabled
        assert fake.foreign_inits[0].source.password == SECRET  # the typed password reached the copy
        fake.foreign_hold.set()
        await wait_until(pilot, lambda: app.foreign_run is not None and app.foreign_run.state == "copied",
                         what="the end of the copy")
        await pilot.pause()
        assert table.get_cell("orders", "state") == "copied"
        assert "copied 3 table(s), 23,200 rows" in "\n".join(t for _, t in app.foreign_run.log)
        assert not screen.query_one("#dashboard", Button).disabled
        fake.add_foreign(__import__("tui_fakes").foreign_migration())
        plan = app.foreign_run.plan
        fake.foreign[plan.migration_id] = fake.foreign.pop(next(iter(fake.foreign)))
        fake.foreign[plan.migration_id].status.migration_id = plan.migration_id
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignDashboardScreen), what="the dashboard")
        assert app.screen.model.migration_id == plan.migration_id  # type: ignore[attr-defined]


async def test_cancel_stops_the_copy() -> None:
    fake = FakeServices()
    fake.foreign_hold.clear()
    app = make_app(services=fake)
    async with app.run_test(size=(120, 34)) as pilot:
        await to_review(pilot)
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, ForeignRunScreen), what="Run")
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.foreign_run is not None and app.foreign_run.state == "cancelled",
                         what="the cancel")
        assert fake.cancel_tokens[-1].cancelled


async def test_each_new_screen_has_help() -> None:
    app = make_app(services=FakeServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await to_pick(pilot)
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, InfoModal) and "no key" in str(app.screen.body)


def test_every_new_screen_has_its_own_help_words() -> None:
    from pgtide.screens.help import HELP

    for screen in (ForeignPickScreen, ForeignFiltersScreen, ForeignReviewScreen, ForeignRunScreen):
        assert len(HELP.get(screen.__name__, "")) > 200, screen.__name__


def _size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


SIZES = [(80, 24), (120, 34)]


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_foreign_pick(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await to_pick(pilot)

    assert snap_compare(make_app(services=FakeServices()), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_foreign_filters_with_a_refused_filter(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = await to_filters(pilot)
        await set_filter(pilot, app, "orders", "nosuch > 3")
        app.screen.query_one("#foreign-filter-list", DataTable).focus()
        await settle(pilot)

    assert snap_compare(make_app(services=FakeServices()), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_foreign_review_with_an_error(snap_compare: Any, size: tuple[int, int]) -> None:
    fake = FakeServices()
    fake.foreign_existing = ("orders",)

    async def run_before(pilot: Pilot[Any]) -> None:
        await to_review(pilot)

    assert snap_compare(make_app(services=fake), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_foreign_run_copying(snap_compare: Any, size: tuple[int, int]) -> None:
    fake = FakeServices()
    fake.foreign_hold.clear()

    async def run_before(pilot: Pilot[Any]) -> None:
        app = await to_review(pilot)
        await pilot.press("g")
        await wait_until(pilot, lambda: app.foreign_run is not None
                         and app.foreign_run.tables["customers"].rows_done > 0, what="progress")
        await pilot.pause()
        await pilot.pause()

    try:
        assert snap_compare(make_app(services=fake), terminal_size=size, run_before=run_before)
    finally:
        fake.foreign_hold.set()
