"""How the app behaves around its long jobs and its errors (fixed answers, no server needed)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from tui_fakes import FakeServices, demo_plan, wizard_state
from tui_support import make_app, open_pick, settle, wait_until

from pgtide.app.tui import PgtideApp
from pgtide.core.catalog.server import ServerInfo
from pgtide.core.infra.endpoint import Endpoint
from pgtide.screens.dashboard import DashboardScreen
from pgtide.screens.run import RunScreen
from pgtide.screens.start import StartScreen
from pgtide.screens.state import TimeFilterChoice
from pgtide.widgets.modals import ConfirmModal, ErrorModal

ROOT = Path(__file__).resolve().parents[2]


async def start_held_migration(pilot: Pilot[Any], fake: FakeServices) -> PgtideApp:
    app = await open_pick(pilot, wizard_state())
    app.wizard.set_mode(("shop", "public", "audit_log"), "schema_only")
    app.wizard.time_filters[("shop", "public", "metrics")] = TimeFilterChoice("recorded_at", "90 days")
    app.show_filters()
    await settle(pilot)
    app.show_review()
    await settle(pilot)
    await pilot.press("g")
    await wait_until(pilot, lambda: app.migration is not None and app.migration.phase_status("data") == "running",
                     what="the data phase")
    return app


async def test_cancel_asks_first_then_stops_the_run_without_a_teardown() -> None:
    fake = FakeServices(hold_init=True)
    async with make_app(services=fake).run_test(size=(120, 34)) as pilot:
        app = await start_held_migration(pilot, fake)
        assert isinstance(app.screen, RunScreen)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # not yet: it keeps running
        await pilot.pause()
        assert app.migration is not None and app.migration.state == "running"
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="the cancel")
        assert app.migration.state == "cancelled"
        assert fake.cancel_tokens[-1].cancelled
        # The engine undoes what an interrupted run created; a teardown on top would make the
        # rerun refuse the target, so the app must not run one.
        assert fake.torn_down == []
        assert "cancelled" in app.export_screenshot().replace("&#160;", " ")


async def test_leaving_the_run_screen_does_not_stop_the_migration() -> None:
    fake = FakeServices(hold_init=True)
    async with make_app(services=fake).run_test(size=(120, 34)) as pilot:
        app = await start_held_migration(pilot, fake)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        assert not any(isinstance(screen, RunScreen) for screen in app.screen_stack)
        fake.hold.set()
        await wait_until(pilot, lambda: app.migration is not None and app.migration.finished, what="init")
        assert app.migration.state == "streaming"
        await pilot.press("m")  # back to it from the start screen
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        assert "streaming" in app.export_screenshot().replace("&#160;", " ")


async def test_polling_pauses_under_a_modal_and_never_overlaps() -> None:
    fake = FakeServices(lag=(0,))
    app = make_app(services=fake, poll_seconds=0.05)
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: bool(fake.monitors) and fake.monitors[-1].polls >= 3, what="three polls")
        monitor = fake.monitors[-1]
        await pilot.press("t")  # the teardown confirmation is a modal
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.pause(0.1)
        paused_at = monitor.polls
        await pilot.pause(0.5)
        assert monitor.polls == paused_at
        await pilot.press("n")
        await wait_until(pilot, lambda: monitor.polls >= paused_at + 3, what="polling to resume")
        assert isinstance(app.screen, DashboardScreen)
        # One poll at a time: the poll worker group never holds two running polls.
        assert len([w for w in app.workers if w.group == "poll" and w.is_running]) <= 1


async def test_quitting_during_a_migration_asks_and_cancels_it() -> None:
    fake = FakeServices(hold_init=True)
    async with make_app(services=fake).run_test(size=(120, 34)) as pilot:
        app = await start_held_migration(pilot, fake)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, what="the shutdown")
        assert fake.cancel_tokens[-1].cancelled
        assert app.migration is not None and app.migration.state == "cancelled"
        assert fake.torn_down == []


class ExplodingServices(FakeServices):
    def probe(self, endpoint: Endpoint) -> ServerInfo:
        raise RuntimeError("libpq said: password=hunter2 host=old-db")


async def test_an_unexpected_error_shows_no_details_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pgtide")
    app = make_app(services=ExplodingServices())
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        await pilot.press("ctrl+t")
        # Both sides' tests run in threads: on a loaded machine the error arrives after a settle.
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), what="the error dialog")
        await settle(pilot)
        screen_text = app.export_screenshot().replace("&#160;", " ")
        assert "Unexpected error" in screen_text and "RuntimeError" in screen_text
        assert "hunter2" not in screen_text and "Traceback" not in screen_text
    # With the log file configured (any earlier CLI test does), its scrub filter turns the
    # traceback into scrubbed text on the record itself: either form is the logged traceback.
    logged = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert logged
    assert all("hunter2" not in (r.exc_text or "") for r in logged)


async def test_command_palette_offers_every_action_of_the_screen() -> None:
    fake = FakeServices(lag=(0,))
    app = make_app(services=fake, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        app.open_dashboard(demo_plan())
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Verify now", "Teardown", "Start screen", "New migration", "Quit"):
            assert title in titles, titles


def _work_decorators(path: Path) -> list[tuple[int, ast.Call]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "work":
                    found.append((node.lineno, decorator))
    return found


def test_every_worker_is_a_thread_with_a_fixed_description() -> None:
    """The default description is repr(args): it would show endpoints, passwords included."""
    files = [ROOT / "app" / "tui.py", *sorted((ROOT / "screens").glob("*.py")), *sorted((ROOT / "widgets").glob("*.py"))]
    decorators = [(path, line, call) for path in files for line, call in _work_decorators(path)]
    assert len(decorators) >= 15
    for path, line, call in decorators:
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        where = f"{path.relative_to(ROOT)}:{line}"
        assert isinstance(keywords.get("description"), ast.Constant), f"{where}: description must be a fixed text"
        assert isinstance(keywords.get("thread"), ast.Constant) and keywords["thread"].value is True, where
        assert isinstance(keywords.get("exit_on_error"), ast.Constant) and keywords["exit_on_error"].value is False, where


def test_importing_the_app_does_not_import_psycopg() -> None:
    import subprocess
    import sys

    code = "import sys, pgtide.app.tui, pgtide.app.cli; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"


async def test_the_dashboard_opens_straight_from_a_profile() -> None:
    """``pgtide tui --profile NAME --dashboard``: for a migration that is already running."""
    fake = FakeServices(lag=(0,))
    fake.save_profile("prod-move", demo_plan())
    fake.passwords["app@new-db:5432"] = "from-the-keyring"
    app = make_app(services=fake, profile="prod-move", dashboard=True, poll_seconds=3600)
    async with app.run_test(size=(120, 34)) as pilot:
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.latest is not None, what="a poll")
        assert isinstance(app.screen, DashboardScreen)
        assert app.dashboard is not None and app.dashboard.plan.target.password == "from-the-keyring"
        assert "streaming" in app.export_screenshot().replace("&#160;", " ")
