"""What a DBA relies on at 2 a.m.: destructive actions confirmed, gates that say why, help on
every screen, states readable without colour, every button reachable at 80x24.

Fixed answers (tui_fakes.py), no server: each test drives the app with keys as a user would.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select
from tui_fakes import FakeServices, demo_plan, wizard_state
from tui_support import make_app, open_pick, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.screens.base import PgtideScreen
from pgtide.screens.connect import ConnectScreen
from pgtide.screens.dashboard import DashboardScreen
from pgtide.screens.filters import FiltersScreen
from pgtide.screens.pick import PickScreen
from pgtide.screens.review import ReviewScreen
from pgtide.screens.run import RunScreen
from pgtide.screens.start import StartScreen
from pgtide.screens.state import TimeFilterChoice
from pgtide.widgets.endpoint_form import EndpointForm
from pgtide.widgets.modals import ConfirmModal, InfoModal, TypedConfirmModal
from pgtide.widgets.toggles import TickBox

SMALL = (80, 24)


def screen_text(app: PgtideApp) -> str:
    """What the terminal shows, as plain lines (an SVG splits text at every change of style)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def words(text: str) -> str:
    """``text`` with every run of white space as one space (marks and labels are padded)."""
    return " ".join(text.split())


def static_text(screen: Any, selector: str) -> str:
    """A Static's whole text, including what its scrolling container has out of view."""
    return str(screen.query_one(selector).content)


def notices(app: PgtideApp) -> str:
    return " ".join(str(notification.message) for notification in app._notifications)


async def to_review(pilot: Pilot[Any], *, drop_existing: bool = False) -> PgtideApp:
    app = await open_pick(pilot, wizard_state())
    app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
    app.wizard.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "90 days")
    app.wizard.options["drop_existing"] = drop_existing
    app.show_filters()
    await settle(pilot)
    app.show_review()
    await settle(pilot)
    assert isinstance(app.screen, ReviewScreen)
    return app


# -- confirmations ------------------------------------------------------------------------------


async def test_start_with_a_failing_check_says_why_and_starts_nothing() -> None:
    fake = FakeServices(validation_error=True)
    async with make_app(services=fake).run_test(size=SMALL) as pilot:
        app = await to_review(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert app.migration is None
        assert isinstance(app.screen, ReviewScreen)
        said = notices(app)
        assert "blocked by 1 failed check" in said and "primary key or replica identity" in said
        assert "press r to check again" in said


async def test_dropping_a_target_asks_for_its_name_and_cancelling_changes_nothing() -> None:
    fake = FakeServices(non_empty_targets=("shop",))
    async with make_app(services=fake).run_test(size=SMALL) as pilot:
        app = await to_review(pilot, drop_existing=True)
        assert app.screen.query_one("#drop-existing", TickBox).value
        await pilot.press("g")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, TypedConfirmModal)
        assert modal.word == "shop"
        text = screen_text(app)
        assert "Type shop to confirm" in text and "no undo" in text
        # "y" out of habit, then a wrong name: nothing can be confirmed.
        await pilot.press("y", "s", "h", "o", "p", "x")
        await pilot.pause()
        assert modal.query_one("#typed-yes", Button).disabled
        await pilot.press("enter")
        await pilot.pause()
        assert app.migration is None and isinstance(app.screen, TypedConfirmModal)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        assert app.migration is None and fake.cancel_tokens == []
        # Asked again, the right name starts it.
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"shop")
        await pilot.pause()
        assert not app.screen.query_one("#typed-yes", Button).disabled
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="the migration")
        assert app.migration is not None and app.migration.state == "streaming"


async def test_without_drop_existing_a_non_empty_target_blocks_start() -> None:
    fake = FakeServices(non_empty_targets=("shop",))
    async with make_app(services=fake).run_test(size=SMALL) as pilot:
        app = await to_review(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert app.migration is None
        assert "target database [shop]" in notices(app)


async def test_quitting_a_streaming_dashboard_says_what_stops_and_staying_changes_nothing() -> None:
    fake = FakeServices(lag=(0,))
    async with make_app(services=fake, poll_seconds=3600).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "keeps streaming on the servers" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.is_running and not app.shutting_down


async def test_the_demo_says_quitting_removes_its_servers() -> None:
    fake = FakeServices(lag=(0,))
    app = make_app(services=fake, poll_seconds=3600, quit_warning="quitting also stops both throwaway servers")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "throwaway servers" in app.screen.question
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and not app.shutting_down


async def test_teardown_after_differences_says_so() -> None:
    fake = FakeServices(lag=(0,), differing={("public", "orders"): 2})
    async with make_app(services=fake, poll_seconds=3600).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await pilot.press("v")
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.verify_state == "done",
                         what="verify")
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "found differences in 1 table(s)" in app.screen.question
        await pilot.press("n")
        await settle(pilot)
        assert fake.torn_down == []


# -- gates ---------------------------------------------------------------------------------------


async def test_next_on_connect_is_refused_while_a_server_does_not_answer() -> None:
    async with make_app(services=FakeServices()).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        state = wizard_state()
        state.target_fields.host = "unreachable"
        app.open_wizard(state, ())
        await settle(pilot)
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen)
        assert "Next needs both servers to answer: the target (Cannot connect)" in notices(app)
        assert "target" not in app.wizard.server_info and "source" in app.wizard.server_info


async def test_editing_a_tested_field_takes_the_mark_away() -> None:
    async with make_app(services=FakeServices()).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert "source" in app.wizard.server_info and "✔" in screen_text(app)
        form = app.screen.query_one("#source-form", EndpointForm)
        form.query_one("#host", Input).focus()
        await pilot.press("end", "x")
        await pilot.pause()
        assert "source" not in app.wizard.server_info
        assert "not tested since the last change" in screen_text(app)


async def test_a_refused_row_filter_blocks_next_and_names_the_table() -> None:
    async with make_app(services=FakeServices()).run_test(size=SMALL) as pilot:
        app = await open_pick(pilot, wizard_state())
        app.show_filters()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FiltersScreen)
        screen.show_table(("shop", "public", "orders"))
        await pilot.pause()
        screen.query_one("#row-filter", Input).value = "region = 'eu'"
        screen.apply_row_filter()
        await settle(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, FiltersScreen)
        assert "refused the filter of shop.public.orders" in notices(app)


async def test_a_typed_but_unchecked_row_filter_blocks_next() -> None:
    async with make_app(services=FakeServices()).run_test(size=SMALL) as pilot:
        app = await open_pick(pilot, wizard_state())
        app.show_filters()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FiltersScreen)
        screen.show_table(("shop", "public", "customers"))
        await pilot.pause()
        screen.query_one("#row-filter", Input).value = "id > 10"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, FiltersScreen)
        assert "typed is not applied yet" in notices(app)


async def test_filters_of_a_schema_only_table_are_off_and_time_columns_are_the_identitys() -> None:
    async with make_app(services=FakeServices()).run_test(size=SMALL) as pilot:
        app = await open_pick(pilot, wizard_state())
        app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
        app.show_filters()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FiltersScreen)
        screen.show_table(("shop", "public", "audit_log"))
        await pilot.pause()
        assert screen.query_one("#row-filter", Input).disabled
        assert screen.query_one("#time-column", Select).disabled
        assert "no filter: this table is schema only" in static_text(screen, "#row-result")
        # orders' created_at is not in its key: a publication could never filter on it.
        screen.show_table(("shop", "public", "orders"))
        await pilot.pause()
        assert not screen.query_one("#row-filter", Input).disabled
        assert screen.query_one("#time-column", Select).disabled
        assert "not in the table's key or replica identity" in static_text(screen, "#time-result")
        screen.show_table(("shop", "public", "metrics"))
        await pilot.pause()
        column = screen.query_one("#time-column", Select)
        assert not column.disabled
        assert [value for _, value in column._options if isinstance(value, str)] == ["recorded_at"]


# -- help ------------------------------------------------------------------------------------------


async def test_help_opens_on_every_screen_and_escape_returns_to_it() -> None:
    fake = FakeServices(lag=(0,))
    fake.save_profile("prod-move", demo_plan())
    async with make_app(services=fake, poll_seconds=3600).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        seen: list[str] = []

        async def check_help(expected: type[PgtideScreen], words: str, key: str = "f1") -> None:
            screen = app.screen
            assert isinstance(screen, expected)
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, InfoModal), f"no help on {expected.__name__}"
            body = str(app.screen.body)
            assert words in body and "Keys on this screen" in body
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is screen  # not the Start screen
            seen.append(expected.__name__)

        await check_help(StartScreen, "Saved profiles", key="question_mark")
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        await check_help(ConnectScreen, "Test connection")
        app.show_pick()
        await settle(pilot)
        await check_help(PickScreen, "no primary key or replica identity", key="question_mark")
        app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
        app.show_filters()
        await settle(pilot)
        await check_help(FiltersScreen, "Row filter")
        app.show_review()
        await settle(pilot)
        await check_help(ReviewScreen, "type the name of each database")
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
        await check_help(RunScreen, "Cancel is possible only while copying")
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="the copy")
        app.open_dashboard(demo_plan())
        await settle(pilot)
        await check_help(DashboardScreen, "Quitting the app does not stop replication")
        assert len(seen) == 7


async def test_pick_help_lists_the_pickers_keys() -> None:
    async with make_app(services=FakeServices()).run_test(size=SMALL) as pilot:
        app = await open_pick(pilot, wizard_state())
        app.screen.query_one("#tables").query_one("DataTable").focus()
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, InfoModal)
        body = str(app.screen.body)
        assert "Whole schema" in body and "Select matches" in body


# -- states without colour ----------------------------------------------------------------------------


async def test_toggles_read_without_colour() -> None:
    async with make_app(services=FakeServices()).run_test(size=(120, 34)) as pilot:
        app = await to_review(pilot)
        assert "[ ] Drop and recreate" in words(screen_text(app))
        app.screen.query_one("#drop-existing", TickBox).value = True
        await settle(pilot)
        assert "[x] Drop and recreate" in words(screen_text(app))
        app.show_start()
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        app.show_pick()
        await settle(pilot)
        text = words(screen_text(app))
        assert "[x] shop" in text and "[ ] postgres" in text and "▐X▌" not in text
        app.show_filters()
        await settle(pilot)
        text = words(screen_text(app))
        assert "(•) Copy rows" in text and "( ) Schema only" in text and "▐●▌" not in text


# -- layout ----------------------------------------------------------------------------------------


async def assert_buttons_reachable(pilot: Pilot[Any]) -> list[str]:
    """Every shown button of the screen in front can be scrolled to and is on screen, uncovered."""
    app = pilot.app
    screen = app.screen
    width, height = app.size
    found = []
    for button in screen.query(Button):
        if not button.display or (not button.is_on_screen and not button.parent):
            continue
        button.scroll_visible(animate=False, immediate=True)
        await pilot.pause()
        region = button.region
        assert region.width > 0 and region.height > 0, f"{button.id} has no room on {type(screen).__name__}"
        assert region.right <= width and region.bottom <= height, f"{button.id} is off {type(screen).__name__}"
        x, y = region.x + region.width // 2, region.y + region.height // 2
        widget, _ = screen.get_widget_at(x, y)
        assert widget is button, f"{button.id} on {type(screen).__name__} is covered by {widget!r}"
        found.append(str(button.id))
    return found


async def test_the_whole_wizard_at_80x24_has_every_button_within_reach() -> None:
    fake = FakeServices(lag=(0,))
    fake.save_profile("prod-move", demo_plan())
    async with make_app(services=fake, poll_seconds=3600).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        assert {"new", "load", "delete"} <= set(await assert_buttons_reachable(pilot))
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        assert {"test", "back", "next"} <= set(await assert_buttons_reachable(pilot))
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, PickScreen)
        app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
        assert {"back", "next"} <= set(await assert_buttons_reachable(pilot))
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, FiltersScreen)
        assert {"check-row", "back", "next"} <= set(await assert_buttons_reachable(pilot))
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        assert {"back", "save", "again", "start"} <= set(await assert_buttons_reachable(pilot))
        await pilot.press("g")
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="the copy")
        assert isinstance(app.screen, RunScreen)
        assert {"leave", "dashboard"} <= set(await assert_buttons_reachable(pilot))
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert {"leave", "verify", "teardown"} <= set(await assert_buttons_reachable(pilot))


# -- the rest ----------------------------------------------------------------------------------------


async def test_start_without_profiles_offers_no_profile_actions_and_a_saved_one_appears() -> None:
    fake = FakeServices()
    async with make_app(services=fake).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        for button_id in ("#load", "#duplicate", "#delete", "#dashboard"):
            assert app.screen.query_one(button_id, Button).disabled
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        fake.save_profile("saved-in-the-wizard", demo_plan())
        app.show_start()
        await settle(pilot)
        assert "saved-in-the-wizard" in screen_text(app)
        assert not app.screen.query_one("#load", Button).disabled


async def test_run_lists_schema_only_tables_hides_cancel_once_streaming_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeServices(hold_init=True)
    caplog.set_level(logging.INFO, logger="pgtide.tui.run")
    async with make_app(services=fake).run_test(size=(120, 34)) as pilot:
        app = await to_review(pilot)
        await pilot.press("g")
        await wait_until(pilot, lambda: app.migration is not None and app.migration.phase_status("data") == "running",
                         what="the data phase")
        text = screen_text(app)
        assert "public.audit_log" in text and "definition only" in text and "elapsed" in text
        assert app.screen.query_one("#cancel", Button).display
        fake.hold.set()
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="init")
        await pilot.pause()
        assert not app.screen.query_one("#cancel", Button).display
    logged = [record.getMessage() for record in caplog.records if record.name == "pgtide.tui.run"]
    assert "validated: every check passed" in logged
    assert any("streaming" in line for line in logged)


async def test_a_reopened_dashboard_keeps_the_last_verify_and_the_lag_history() -> None:
    fake = FakeServices(lag=(0,))
    async with make_app(services=fake, poll_seconds=3600).run_test(size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, PgtideApp)
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        await pilot.press("v")
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.verify_state == "done",
                         what="verify")
        assert "last verify at 09:26:53" in screen_text(app)
        first = app.dashboard
        assert first is not None
        app.show_start()
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard is not first
                         and app.dashboard.latest is not None, what="the reopened dashboard's poll")
        model = app.dashboard
        assert model is not None and model.verify_state == "done" and model.verify_results
        assert len(model.lag_history["shop"]) == 2
        assert "last verify at 09:26:53" in screen_text(app)
