"""A slower, superseded request never decides what a screen shows (fixed answers, no server needed).

Each test holds the first request's worker on a threading.Event the test controls, lets a
second request finish, then releases the first and waits (through Textual's message hook)
until the first one's late result has reached the screen: whatever the screen shows then
must come from the second request only. Nothing is timed: the order is forced, not hoped for.
"""

from __future__ import annotations

import threading
from typing import Any

from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Static
from tui_fakes import FakeServices, wizard_state
from tui_support import SNAPSHOT_SIZE, make_app, open_pick, settle, wait_until

from pgtide.core.catalog.discovery import TableInfo
from pgtide.core.catalog.filtercheck import FilterCheck
from pgtide.core.catalog.server import ServerInfo
from pgtide.core.engine.validate import Check, Report
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError, PgtideError
from pgtide.core.infra.events import CheckReported, Emit
from pgtide.core.model.plan import Plan
from pgtide.core.model.selection import TimeFilter
from pgtide.screens.connect import ConnectScreen
from pgtide.screens.filters import FiltersScreen
from pgtide.screens.messages import (
    FilterChecked,
    ServerProbed,
    ServerProbeFailed,
    ValidationFinished,
)
from pgtide.screens.review import ReviewScreen
from pgtide.widgets.check_list import CheckList
from pgtide.widgets.endpoint_form import EndpointForm

#: The sample's table without a primary key (an error check unless it is schema-only).
NO_KEY = ("shop", "public", "audit_log")
#: Only a guard against a broken test hanging forever: every test sets its events itself.
GUARD_SECONDS = 60.0


class Gate:
    """Holds the first call of something until ``release()``; later calls pass at once."""

    def __init__(self) -> None:
        self.calls = 0
        self._first = threading.Event()
        self._lock = threading.Lock()

    def enter(self) -> int:
        """Called from a worker thread: the call's number (1, 2, …), once it may go on."""
        with self._lock:
            self.calls += 1
            number = self.calls
        if number == 1 and not self._first.wait(GUARD_SECONDS):
            raise AssertionError("the test never released the first call")
        return number

    def release(self) -> None:
        self._first.set()


class Recorder:
    """A Textual message hook keeping the messages of the given types, in the order they are handled."""

    def __init__(self, *types: type[Message]) -> None:
        self.types = types
        self.seen: list[Message] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, self.types):
            self.seen.append(message)


def check_lines(screen: ReviewScreen) -> list[str]:
    return [str(line.render()) for line in screen.query_one("#checks", CheckList).query(Static)]


# -- review -----------------------------------------------------------------------------------


class GatedValidation(FakeServices):
    """validate() marks its checks with the plan's drop_existing; the first validation waits for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    def validate(self, plan: Plan, emit: Emit) -> Report:
        self.gate.enter()
        report = super().validate(plan, emit)
        marker = Check("request", "ok", f"drop_existing={plan.options.drop_existing}")
        emit(CheckReported(marker.name, marker.status, marker.observed, marker.remedy, marker.database))
        return Report([*report.checks, marker], report.scope)


async def _review_with_request_one_waiting(pilot: Any, fake: GatedValidation) -> ReviewScreen:
    """Open Review on a selection request 2 will pass, with request 1 held inside validate."""
    app = pilot.app
    await open_pick(pilot, wizard_state())
    app.wizard.set_mode(NO_KEY, "schema_only")  # so that request 2 passes every check
    app.show_filters()
    await settle(pilot)
    app.show_review()
    await wait_until(pilot, lambda: fake.gate.calls == 1, what="request 1 inside validate")
    screen = app.screen
    assert isinstance(screen, ReviewScreen)
    return screen


async def test_a_recheck_drops_the_checks_and_the_plan_of_the_validation_it_replaced() -> None:
    fake = GatedValidation()
    finished = Recorder(ValidationFinished)
    app = make_app(services=fake)
    async with app.run_test(size=SNAPSHOT_SIZE, message_hook=finished) as pilot:
        screen = await _review_with_request_one_waiting(pilot, fake)

        # Request 2: the user ticks drop-existing while request 1 (without it) is still running.
        screen.query_one("#drop-existing", Checkbox).value = True
        # The report and the recorded message: the hook can see the message a moment after its handler ran.
        await wait_until(pilot, lambda: screen.report is not None and len(finished.seen) >= 1,
                         what="request 2 to finish")
        assert len(finished.seen) == 1
        current = finished.seen[0]
        assert isinstance(current, ValidationFinished)

        fake.gate.release()
        await wait_until(pilot, lambda: len(finished.seen) == 2, what="request 1's late result")
        await pilot.pause()  # the late result's handler has returned

        stale = finished.seen[1]
        assert isinstance(stale, ValidationFinished)
        assert stale.plan.options.drop_existing is False  # it really was request 1 that came last
        assert screen.plan is current.plan and screen.plan.options.drop_existing is True
        assert screen.report is current.report
        lines = check_lines(screen)
        assert len(lines) == len(current.report.checks)
        assert any("drop_existing=True" in line for line in lines), lines
        assert not any("drop_existing=False" in line for line in lines), lines
        assert "ready to start" in str(screen.query_one("#review-status", Static).render())
        assert not screen.query_one("#start", Button).disabled


async def test_a_recheck_started_mid_validation_keeps_late_checks_out_of_the_cleared_list() -> None:
    """Request 1 is released before request 2 finishes: its checks land while 2's list is filling."""

    class SecondWaits(GatedValidation):
        def __init__(self) -> None:
            super().__init__()
            self.second = Gate()

        def validate(self, plan: Plan, emit: Emit) -> Report:
            if plan.options.drop_existing:
                self.second.enter()  # request 2 is the first call through this gate: it waits
            return super().validate(plan, emit)

    fake = SecondWaits()
    finished = Recorder(ValidationFinished)
    app = make_app(services=fake)
    async with app.run_test(size=SNAPSHOT_SIZE, message_hook=finished) as pilot:
        screen = await _review_with_request_one_waiting(pilot, fake)
        screen.query_one("#drop-existing", Checkbox).value = True
        await wait_until(pilot, lambda: fake.second.calls == 1, what="request 2 inside validate")

        fake.gate.release()  # request 1 runs to its end while request 2 is held
        await wait_until(pilot, lambda: len(finished.seen) == 1, what="request 1's late result")
        await pilot.pause()
        assert screen.report is None and screen.plan is None
        assert check_lines(screen) == []  # nothing of request 1 in the list request 2 cleared

        fake.second.release()
        await wait_until(pilot, lambda: screen.report is not None, what="request 2 to finish")
        assert screen.plan is not None and screen.plan.options.drop_existing is True
        assert not any("drop_existing=False" in line for line in check_lines(screen))


# -- filters ----------------------------------------------------------------------------------


class GatedFilterCheck(FakeServices):
    """The first filter check waits for the test and is then refused; later ones are accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    def check_filter(self, endpoint: Endpoint, database: str, table: TableInfo, *, predicate: str | None = None,
                     time_filter: TimeFilter | None = None) -> FilterCheck:
        if self.gate.enter() == 1:
            raise InputError(f"the filter {predicate!r} is rejected by the server", "Fix it.",
                             title="Invalid row filter")
        return FilterCheck(predicate or "", 10, ("id",))


async def test_a_filter_check_overtaken_by_a_newer_one_gives_no_verdict() -> None:
    fake = GatedFilterCheck()
    checked = Recorder(FilterChecked)
    app = make_app(services=fake)
    async with app.run_test(size=SNAPSHOT_SIZE, message_hook=checked) as pilot:
        await open_pick(pilot, wizard_state())
        app.show_filters()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FiltersScreen)
        key = ("shop", "public", "orders")
        screen.show_table(key)
        await pilot.pause()
        row_filter = screen.query_one("#row-filter", Input)
        row_filter.value = "id > 1"
        screen.apply_row_filter()
        await wait_until(pilot, lambda: fake.gate.calls == 1, what="check 1 at the server")
        row_filter.value = "id > 2"
        screen.apply_row_filter()
        await wait_until(pilot, lambda: len(checked.seen) == 1, what="check 2's verdict")

        fake.gate.release()
        await wait_until(pilot, lambda: len(checked.seen) == 2, what="check 1's late verdict")
        await pilot.pause()
        late = checked.seen[1]
        assert isinstance(late, FilterChecked) and late.error is not None  # the refusal did arrive
        assert key not in screen.refused
        assert "accepted by the server" in str(screen.query_one("#row-result", Static).render())
        assert app.wizard.row_filters[key] == "id > 2"


# -- connect ----------------------------------------------------------------------------------


class GatedProbe(FakeServices):
    """The first probe waits for the test and then fails; later ones succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    def probe(self, endpoint: Endpoint) -> ServerInfo:
        if self.gate.enter() == 1:
            raise PgtideError(f"{endpoint.redacted()}: nothing accepts connections", "Start it.",
                              title="Cannot connect")
        return super().probe(endpoint)


async def test_a_server_test_overtaken_by_a_newer_one_gives_no_verdict() -> None:
    fake = GatedProbe()
    probed = Recorder(ServerProbed, ServerProbeFailed)
    app = make_app(services=fake)
    async with app.run_test(size=SNAPSHOT_SIZE, message_hook=probed) as pilot:
        await settle(pilot)
        app.open_wizard(wizard_state(), ())
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConnectScreen)
        form = screen.query_one("#source-form", EndpointForm)
        form.query_one("#host", Input).value = "old-host"
        screen.test("source")
        await wait_until(pilot, lambda: fake.gate.calls == 1, what="test 1 at the server")
        form.query_one("#host", Input).value = "old-db"
        screen.test("source")
        await wait_until(pilot, lambda: len(probed.seen) == 1, what="test 2's verdict")

        fake.gate.release()
        await wait_until(pilot, lambda: len(probed.seen) == 2, what="test 1's late verdict")
        await pilot.pause()
        assert isinstance(probed.seen[1], ServerProbeFailed)  # the failure did arrive, last
        assert "source" in app.wizard.server_info
        result = str(form.query_one(".endpoint-result", Static).render())
        assert "PostgreSQL" in result and "Cannot connect" not in result, result
