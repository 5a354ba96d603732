"""The full-screen app: the wizard, the run and the dashboard, and the long jobs behind them.

Screens do the short work of their own step in their own workers. The long jobs belong to
this App, so that leaving a screen never stops them: the migration (init), the dashboard's
polling, verify and teardown. Each runs in a thread worker with a fixed description (the
default would show its arguments, endpoints included) and reports through typed messages;
the App folds them into a model (``self.migration``, ``self.dashboard``) and tells the screens that
draw it. Every error a user sees goes through :meth:`PgtideApp.show_error`.

Polling re-arms a timer after each finished poll (never two at once; a slow server stretches
the interval) and skips its turn while the dashboard is not the screen in front, which
includes any modal dialog over it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from rich.segment import Segments
from rich.text import Text
from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from ..core.infra.errors import PgtideError
from ..core.infra.events import Cancelled, Event, TableProgress
from ..core.infra.logs import log_file
from ..screens.dashboard import DashboardScreen
from ..screens.foreign_dashboard import ForeignDashboardScreen
from ..screens.foreign_run import ForeignRunEnded, ForeignRunEvent, ForeignRunScreen, ForeignRunUpdated
from ..screens.foreign_state import ForeignDashboardModel, ForeignRunModel
from ..screens.messages import (
    CoreEventArrived,
    DashboardOpened,
    DashboardRequested,
    DashboardUpdated,
    ForeignDashboardUpdated,
    ForeignTableVerified,
    ForeignVerifyFinished,
    MigrationFinished,
    MigrationStopped,
    PollFailed,
    ProfileOpened,
    RunUpdated,
    StatusPolled,
    TableProgressed,
    TableVerifiedMessage,
    TeardownFinished,
    VerifyFinished,
    VerifyProgressed,
)
from ..screens.services import CoreServices, Services, StatusSource, VerifyRun, check_services
from ..screens.start import StartScreen
from ..screens.state import DashboardModel, EndpointFields, RunModel, Side, WizardState
from ..widgets.modals import ChoiceModal, ConfirmModal, ErrorModal, InfoModal

if TYPE_CHECKING:
    from ..core.catalog.scope import Scope
    from ..core.foreign.plan import ForeignPlan
    from ..core.infra.events import CancelToken
    from ..core.model.plan import Plan

log = logging.getLogger("pgtide.tui")

#: The one stylesheet, found through the package so it also works from an installed wheel.
STYLESHEET = str(files("pgtide.styles") / "app.tcss")

LONG_JOB_GROUPS = frozenset({"migration", "foreign-migration", "verify", "foreign-verify", "teardown"})


class UnexpectedError(PgtideError):
    """Anything that is not a PgtideError, as the user sees it: no message text, no traceback."""

    default_title = "Unexpected error"


def as_user_error(error: BaseException) -> PgtideError:
    """What the error modal shows for ``error``. Unknown errors are logged (with traceback) first."""
    if isinstance(error, PgtideError):
        return error
    # str(error) can quote a connection string or a server message: only the type is shown.
    log.error("unexpected error in the app", exc_info=error)
    return UnexpectedError(
        f"an internal error occurred ({type(error).__name__}); what was being done was stopped",
        f"The details are in the log file {log_file()}. Please report it with that file.",
    )


class PgtideApp(App[int]):
    """``pgtide`` without arguments. Construct with ``services`` to stand in for core in tests."""

    CSS_PATH = STYLESHEET
    TITLE = "pgtide"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Ctrl-C quits too, even from a text field (people press it to leave; the demo's servers
        # must not outlive it).
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        # Not priority: "?" typed into a text field is a character; F1 works from anywhere.
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False, priority=True),
    ]
    # Screens lay themselves out by these classes (styles/app.tcss): 80 columns stack what
    # 120 put side by side, and 24 rows shrink the fixed-height parts.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-normal"), (170, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(
        self,
        *,
        services: Services | None = None,
        profile: str | None = None,
        source: str | None = None,
        target: str | None = None,
        dashboard: bool = False,
        cursor_blink: bool = True,
        poll_seconds: float = 1.0,
        welcome: str | None = None,
        quit_warning: str | None = None,
    ) -> None:
        super().__init__()
        self.services = check_services(services) if services is not None else CoreServices()
        self.cursor_blink = cursor_blink
        self.poll_seconds = poll_seconds
        self.wizard = WizardState()
        self.migration: RunModel | None = None
        self.dashboard: DashboardModel | None = None
        self._open_on_start = (profile, source, target, dashboard)
        self._welcome = welcome
        #: Said before quitting whenever there is something to lose (the demo: its servers go too).
        self.quit_warning = quit_warning
        #: Wall-clock time for what the user reads as a time of day (tests pin it).
        self.wall_clock: Callable[[], datetime] = datetime.now
        #: The dashboard's model per migration, so reopening a dashboard keeps its verify results and lag history.
        self._dashboards: dict[tuple[str, str, tuple[str, ...]], DashboardModel] = {}
        self._cancel: CancelToken | None = None
        self._monitor: StatusSource | None = None
        self._dashboard_request = 0
        self._poll_timer: Timer | None = None
        self._verify_run: VerifyRun | None = None
        #: A foreign migration's dashboard model per migration id (kept when the screen is left).
        self.foreign_dashboards: dict[str, ForeignDashboardModel] = {}
        #: The running foreign verify's cancel token (one verify at a time, as for PostgreSQL).
        self._foreign_verify_cancel: CancelToken | None = None
        #: The foreign copy started from the wizard (one at a time), and its cancel token.
        self.foreign_run: ForeignRunModel | None = None
        self._foreign_cancel: CancelToken | None = None
        self._exit_when_idle = False
        self.event_loop: asyncio.AbstractEventLoop | None = None

    @property
    def shutting_down(self) -> bool:
        return self._exit_when_idle

    # -- start-up ---------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.event_loop = asyncio.get_running_loop()
        self.push_screen(StartScreen())
        profile, source, target, dashboard = self._open_on_start
        if profile:
            self.load_profile(profile, dashboard=dashboard)
        elif source or target:
            self._open_urls(source or "", target or "", dashboard)
        if self._welcome and not profile:
            self._show_welcome()

    def _show_welcome(self) -> None:
        # A dialog, not a toast: a toast sat over Back/Next for 12 seconds, and the URLs in it
        # must stay readable as long as the user needs. Shown once, over the first screen.
        if self._welcome:
            welcome, self._welcome = self._welcome, None
            self.push_screen(InfoModal("pgtide demo", welcome))

    @work(thread=True, exit_on_error=False, description="Reading the connection strings")
    def _open_urls(self, source: str, target: str, dashboard: bool) -> None:
        target_endpoint = self.services.parse_endpoint(target)
        if source and self.services.looks_foreign(source):
            # `pgtide tui --source shop.db`: the wizard opens on Connect with that foreign source.
            foreign = self.services.parse_foreign(source)
            self.post_message(ProfileOpened(WizardState(target_fields=EndpointFields.from_params(target_endpoint.params),
                                                        foreign_source=foreign.with_password(None)), ()))
            return
        source_endpoint = self.services.parse_endpoint(source)
        if dashboard:
            from ..core.model.selection import Selection

            plan = self.services.build_plan(source_endpoint, target_endpoint, Selection())
            self.post_message(DashboardRequested(plan))
            return
        state = WizardState(source_fields=EndpointFields.from_params(source_endpoint.params),
                            target_fields=EndpointFields.from_params(target_endpoint.params))
        self.post_message(ProfileOpened(state, ()))

    def on_unmount(self) -> None:
        # An init still running when the app goes away is cancelled (it cleans up after itself);
        # otherwise the interpreter would wait for its thread at exit.
        if self._cancel is not None and self.migration_running:
            self._cancel.cancel()
        if self._foreign_cancel is not None and self.foreign_running:
            self._foreign_cancel.cancel()
        # Workers cannot run any more: close the monitor's connections here (a socket close, quick).
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    def keep_long_lived(self) -> None:
        """Take what exists now (a catalog of 10,000 tables) out of the garbage collector's full passes.

        Those objects live as long as the session; a full collection walking them took 100+ ms,
        long enough to be felt as a stalled keystroke in the table picker.
        """
        gc.freeze()

    # -- errors: the one place ---------------------------------------------------------------------

    def show_error(self, error: BaseException) -> None:
        """Show a core error (title, cause, remedy) in the error modal; never a traceback."""
        if isinstance(error, Cancelled):
            return
        shown = as_user_error(error)
        self.push_screen(ErrorModal(shown.title, shown.cause, shown.remedy))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            self.show_error(worker.error)
            if worker.group == "open-profile":
                self._show_welcome()
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            if worker.group == "poll" and event.state != WorkerState.SUCCESS:
                self._schedule_poll()
            if worker.group in LONG_JOB_GROUPS:
                self._exit_if_idle()

    def _fatal_error(self) -> None:
        # Textual's default prints a traceback with local variables on exit: endpoints and
        # passwords can be among them. The traceback goes to the log file; the user gets a line.
        error = self._exception
        log.error("the app stopped on an unexpected error", exc_info=error)
        self._exit_renderables.append(
            Segments(self.console.render(Text(f"pgtide stopped on an unexpected internal error; details are in "
                                              f"{log_file()}", style="bold red"), self.console.options)))
        self._close_messages_no_wait()

    # -- wizard navigation ----------------------------------------------------------------------------

    def _pop_to(self, screen_type: type[Screen[Any]]) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, screen_type):
            self.pop_screen()

    def show_start(self) -> None:
        self._pop_to(StartScreen)

    def new_wizard(self) -> None:
        self.open_wizard(WizardState(), ())

    def open_wizard(self, state: WizardState, warnings: Sequence[str]) -> None:
        from ..screens.connect import ConnectScreen

        self.wizard = state
        self.show_start()
        self.push_screen(ConnectScreen())
        for warning in warnings:
            self.notify(warning, severity="warning", timeout=10)

    def show_pick(self) -> None:
        from ..screens.pick import PickScreen

        self.push_screen(PickScreen())

    def show_filters(self) -> None:
        from ..screens.filters import FiltersScreen

        self.push_screen(FiltersScreen())

    def show_review(self) -> None:
        from ..screens.review import ReviewScreen

        self.push_screen(ReviewScreen())

    def show_foreign_pick(self) -> None:
        from ..screens.foreign_pick import ForeignPickScreen

        self.push_screen(ForeignPickScreen())

    def show_foreign_filters(self) -> None:
        from ..screens.foreign_filters import ForeignFiltersScreen

        self.push_screen(ForeignFiltersScreen())

    def show_foreign_review(self) -> None:
        from ..screens.foreign_review import ForeignReviewScreen

        self.push_screen(ForeignReviewScreen())

    def load_profile(self, name: str, *, dashboard: bool) -> None:
        self._open_profile(name, dashboard)

    @work(thread=True, exit_on_error=False, exclusive=True, group="open-profile", description="Opening a profile")
    def _open_profile(self, name: str, dashboard: bool) -> None:
        profile = self.services.load_profile(name)
        plan = profile.plan
        passwords: dict[Side, str | None] = {}
        for side, endpoint in (("source", plan.source), ("target", plan.target)):
            passwords[side] = None if endpoint.password else self.services.stored_password(endpoint)  # type: ignore[index]
        if dashboard:
            source = plan.source.with_params(password=passwords["source"]) if passwords["source"] else plan.source
            target = plan.target.with_params(password=passwords["target"]) if passwords["target"] else plan.target
            self.post_message(DashboardRequested(replace(plan, source=source, target=target)))
            return
        self.post_message(ProfileOpened(WizardState.from_profile(profile, passwords), profile.warnings))

    @on(ProfileOpened)
    def _profile_opened(self, message: ProfileOpened) -> None:
        self.open_wizard(message.state, message.warnings)
        self._show_welcome()  # over the wizard the profile opened, not under it

    @on(DashboardRequested)
    def _dashboard_requested(self, message: DashboardRequested) -> None:
        self.open_dashboard(message.plan)

    # -- the migration ---------------------------------------------------------------------------------

    @property
    def migration_running(self) -> bool:
        return self.migration is not None and not self.migration.finished

    def start_migration(self, plan: Plan, scope: Scope | None) -> None:
        from ..screens.run import RunScreen

        if self.migration_running:
            self.notify("A migration is already running.", severity="warning")
            self.show_run()
            return
        self.migration = RunModel.for_scope(plan, scope) if scope is not None else RunModel(plan, [])
        # The review step has just validated this plan: the phase is done.
        self.migration.phase_started["validate"] = {""}
        self.migration.phase_finished["validate"] = {""}
        self.migration.add_log("info", "validated: every check passed")
        self._cancel = self.services.cancel_token()
        self._migrate(plan, scope, self._cancel)
        self.show_start()
        self.push_screen(RunScreen())

    def show_run(self) -> None:
        from ..screens.run import RunScreen

        if self.migration is None:
            return
        if any(isinstance(screen, RunScreen) for screen in self.screen_stack):
            self._pop_to(RunScreen)
        else:
            self.push_screen(RunScreen())

    def cancel_migration(self) -> None:
        if self._cancel is not None and self.migration_running and self.migration is not None:
            self._cancel.cancel()
            self.migration.state = "cancelling"
            self.migration.add_log("warning", "cancelling: stopping the copy")
            self._tell_run()

    @work(thread=True, exit_on_error=False, group="migration", description="Migrating: copy, then replication")
    def _migrate(self, plan: Plan, scope: Scope | None, cancel: CancelToken) -> None:
        def emit(event: Event) -> None:
            if isinstance(event, TableProgress):
                self.post_message(TableProgressed(event))
            else:
                self.post_message(CoreEventArrived(event))

        from ..screens.services import Detached

        try:
            results = self.services.init(plan, scope, emit, cancel)
        except Detached:
            return  # the app quits; the migration goes on in its worker
        except Cancelled:
            # The same as Ctrl-C in the CLI: the engine removed what the interrupted run had
            # created and recorded it as unfinished; databases that had finished keep streaming,
            # and a rerun continues. Tearing down here made the rerun refuse ("not empty").
            self.post_message(MigrationStopped(None, [], cancelled=True))
            return
        except Exception as exc:
            self.post_message(MigrationStopped(as_user_error(exc), [], cancelled=False))
            return
        self.post_message(MigrationFinished(results))

    def _tell_run(self) -> None:
        from ..screens.run import RunScreen

        for screen in self.screen_stack:
            if isinstance(screen, RunScreen):
                screen.post_message(RunUpdated())

    @on(CoreEventArrived)
    def _core_event(self, message: CoreEventArrived) -> None:
        if self.migration is not None:
            self.migration.apply(message.event)
            self._tell_run()

    @on(TableProgressed)
    def _table_progressed(self, message: TableProgressed) -> None:
        if self.migration is not None:
            self.migration.apply(message.event)
            self._tell_run()

    @on(MigrationFinished)
    def _migration_finished(self, message: MigrationFinished) -> None:
        run = self.migration
        if run is None:
            return
        run.finished_at = run.clock()
        run.state = "streaming"
        for result in message.results:
            run.add_log("info", f"{result.database}: {result.status}, {result.tables} table(s)")
        run.add_log("info", "streaming: open the dashboard to watch the lag and verify")
        self.notify("The migration is streaming. Press d for the dashboard.", title="Copy finished", timeout=8)
        self._tell_run()

    @on(MigrationStopped)
    def _migration_stopped(self, message: MigrationStopped) -> None:
        run = self.migration
        if run is None:
            return
        run.finished_at = run.clock()
        if message.cancelled:
            run.state = "cancelled"
            run.add_log("warning", "cancelled: what this run had created was removed, finished databases keep "
                                   "streaming; starting it again continues")
        else:
            run.state = "failed"
            run.error = message.error
            run.mark_phase_failed()
            if message.error is not None:
                run.add_log("error", f"{message.error.title}: {message.error.cause}")
                if not self._exit_when_idle:
                    self.show_error(message.error)
        self._tell_run()

    # -- a foreign source's copy ------------------------------------------------------------------------

    @property
    def foreign_running(self) -> bool:
        return self.foreign_run is not None and not self.foreign_run.finished

    def start_foreign_migration(self, plan: ForeignPlan) -> None:
        if self.foreign_running:
            self.notify("A copy is already running.", severity="warning")
        else:
            choices = self.wizard.foreign
            self.foreign_run = (ForeignRunModel.for_choices(plan, choices) if choices is not None
                                else ForeignRunModel(plan))
            self.foreign_run.add_log("info", "validated: no check failed")
            self._foreign_cancel = self.services.cancel_token()
            self._foreign_migrate(plan, self._foreign_cancel)
        self.show_start()
        self.push_screen(ForeignRunScreen())

    def show_foreign_run(self) -> None:
        if self.foreign_run is None:
            return
        if any(isinstance(screen, ForeignRunScreen) for screen in self.screen_stack):
            self._pop_to(ForeignRunScreen)
        else:
            self.push_screen(ForeignRunScreen())

    def cancel_foreign_migration(self) -> None:
        run = self.foreign_run
        if self._foreign_cancel is not None and run is not None and run.state == "running":
            self._foreign_cancel.cancel()
            run.state = "cancelling"
            run.add_log("warning", "cancelling: stopping the copy")
            self._tell_foreign_run()

    @work(thread=True, exit_on_error=False, group="foreign-migration",
          description="Copying the foreign source into PostgreSQL")
    def _foreign_migrate(self, plan: ForeignPlan, cancel: CancelToken) -> None:
        def emit(event: Event) -> None:
            self.post_message(ForeignRunEvent(event))

        try:
            tables = self.services.foreign_init(plan, emit, cancel)
        except Cancelled:
            self.post_message(ForeignRunEnded([], None, cancelled=True))
            return
        except Exception as exc:
            self.post_message(ForeignRunEnded([], as_user_error(exc)))
            return
        self.post_message(ForeignRunEnded(tables, None))

    def _tell_foreign_run(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ForeignRunScreen):
                screen.post_message(ForeignRunUpdated())

    @on(ForeignRunEvent)
    def _foreign_run_event(self, message: ForeignRunEvent) -> None:
        if self.foreign_run is not None:
            self.foreign_run.apply(message.event)
            self._tell_foreign_run()

    @on(ForeignRunEnded)
    def _foreign_run_ended(self, message: ForeignRunEnded) -> None:
        run = self.foreign_run
        if run is None:
            return
        self._foreign_cancel = None
        if message.cancelled:
            run.state = "cancelled"
            run.add_log("warning", "cancelled: tables copied so far are kept; starting again resumes")
        elif message.error is not None:
            run.state = "failed"
            run.error = message.error
            run.add_log("error", f"{message.error.title}: {message.error.cause}")
            if not self._exit_when_idle:
                self.show_error(message.error)
        else:
            run.state = "copied"
            run.copied = list(message.tables)
            run.add_log("info", f"copy finished: {len(message.tables)} table(s); the dashboard verifies and "
                                "starts the sync")
            self.notify("The copy is finished. Press d for the dashboard.", title="Copy finished", timeout=8)
        self._tell_foreign_run()

    # -- the dashboard --------------------------------------------------------------------------------------

    def open_dashboard(self, plan: Plan) -> None:
        self._stop_polling()
        self.dashboard = None
        self._dashboard_request += 1
        self._prepare_dashboard(plan, self._dashboard_request)
        self.show_start()
        self.push_screen(DashboardScreen())

    @work(thread=True, exit_on_error=False, exclusive=True, group="dashboard", description="Opening the dashboard")
    def _prepare_dashboard(self, plan: Plan, request: int) -> None:
        scope = self.services.migration_scope(plan)
        monitor = self.services.open_monitor(plan, [db.name for db in scope.databases],
                                             tables=sum(len(db.tables) for db in scope.databases))
        self.post_message(DashboardOpened(plan, scope, monitor, request, self.services.recorded_history(plan)))

    @on(DashboardOpened)
    def _dashboard_opened(self, message: DashboardOpened) -> None:
        if message.request != self._dashboard_request:
            # A dashboard opened since: this late answer's monitor is closed, never shown.
            self._close_monitor(message.monitor)
            return
        if self._monitor is not None and self._monitor is not message.monitor:
            self._close_monitor(self._monitor)
        model = DashboardModel.for_scope(message.plan, message.scope)
        key = (message.plan.source.redacted(), message.plan.target.redacted(), tuple(model.databases))
        previous = self._dashboards.get(key)
        if previous is not None:
            model.carry_over(previous)
        else:
            # Reopened in a new app: the worker's lag samples and the recorded verify.
            model.restore(*message.history)
        self._dashboards[key] = model
        self.dashboard = model
        self.keep_long_lived()
        self._monitor = message.monitor
        self._tell_dashboard("tables")
        self._schedule_poll(0.0)

    def _tell_dashboard(self, what: str) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                screen.post_message(DashboardUpdated(what))

    def _schedule_poll(self, delay: float | None = None) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        if self._monitor is None:
            return
        # Textual's Timer divides by its delay: 0 would never fire.
        seconds = max(0.01, self.poll_seconds if delay is None else delay)
        self._poll_timer = self.set_timer(seconds, self._poll_tick, name="dashboard-poll")

    def _stop_polling(self, *, release: bool = True) -> None:
        """No more polls; ``release`` closes the monitor's connections in a worker.

        When the app is exiting, workers may never start: the monitor is kept for on_unmount.
        """
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if release and self._monitor is not None:
            self._close_monitor(self._monitor)
            self._monitor = None

    @property
    def polling_paused(self) -> bool:
        """Poll only for a dashboard in front: not under a modal, not from another screen."""
        return not isinstance(self.screen, DashboardScreen)

    def _poll_tick(self) -> None:
        self._poll_timer = None
        monitor = self._monitor
        if monitor is None or self.dashboard is None or self.dashboard.torn_down or self._exit_when_idle:
            return
        if self.polling_paused:
            self._schedule_poll()
            return
        self._poll(monitor)

    @work(thread=True, exit_on_error=False, exclusive=True, group="poll", description="Polling replication status")
    def _poll(self, monitor: StatusSource) -> None:
        try:
            status = monitor.poll()
        except Exception as exc:
            self.post_message(PollFailed(as_user_error(exc)))
            return
        self.post_message(StatusPolled(status))

    @on(StatusPolled)
    def _status_polled(self, message: StatusPolled) -> None:
        if self.dashboard is not None:
            self.dashboard.record(message.status)
            self._tell_dashboard("status")
        self._schedule_poll()

    @on(PollFailed)
    def _poll_failed(self, message: PollFailed) -> None:
        if self.dashboard is not None:
            self.dashboard.poll_error = message.error
            self._tell_dashboard("status")
        self._schedule_poll()

    @work(thread=True, exit_on_error=False, group="monitor-close", description="Closing monitor connections")
    def _close_monitor(self, monitor: StatusSource) -> None:
        monitor.close()

    # -- verify ------------------------------------------------------------------------------------------

    def start_verify(self) -> None:
        model = self.dashboard
        if model is None or model.verify_state == "running" or model.torn_down:
            return
        model.verify_state = "running"
        model.verify_done = 0
        model.verify_total = len(list(model.tables))
        model.verify_current = ""
        self._tell_dashboard("verify")
        self._verify(model.plan)

    @work(thread=True, exit_on_error=False, exclusive=True, group="verify", description="Verifying source against target")
    def _verify(self, plan: Plan) -> None:
        from ..core.verify.compare import TableStarted, TableVerified

        def on_event(event: object) -> None:
            if isinstance(event, TableStarted):
                self.post_message(VerifyProgressed(event.index - 1, event.total, f"{event.schema}.{event.name}"))
            elif isinstance(event, TableVerified):
                self.post_message(TableVerifiedMessage(event.result))

        run = self.services.verifier(plan, on_event)
        self._verify_run = run
        try:
            report = run.run()
        except Exception as exc:
            self.post_message(VerifyFinished(None, as_user_error(exc)))
            return
        finally:
            self._verify_run = None
        self.post_message(VerifyFinished(report, None))

    @on(VerifyProgressed)
    def _verify_progressed(self, message: VerifyProgressed) -> None:
        model = self.dashboard
        if model is not None:
            model.verify_done = message.done
            model.verify_total = message.total
            model.verify_current = message.current
            self._tell_dashboard("verify")

    @on(TableVerifiedMessage)
    def _table_verified(self, message: TableVerifiedMessage) -> None:
        model = self.dashboard
        if model is not None:
            result = message.result
            model.verify_results[(result.database, result.schema, result.name)] = result
            model.verify_done = max(model.verify_done, len(model.verify_results))
            self._tell_dashboard("verify")

    @on(VerifyFinished)
    def _verify_finished(self, message: VerifyFinished) -> None:
        model = self.dashboard
        if model is None:
            return
        if message.error is not None:
            model.verify_state = "failed"
            if not self._exit_when_idle and not isinstance(message.error, Cancelled):
                self.show_error(message.error)
        else:
            model.verify_state = "done"
            model.verify_report = message.report
            model.verify_finished_at = self.wall_clock()
            if message.report is not None:
                for result in message.report.tables:
                    model.verify_results[(result.database, result.schema, result.name)] = result
        self._tell_dashboard("verify")

    # -- a foreign source's dashboard -------------------------------------------------------------------

    def open_foreign_dashboard(self, migration_id: str) -> None:
        model = self.foreign_dashboards.setdefault(migration_id, ForeignDashboardModel(migration_id))
        self.show_start()
        self.push_screen(ForeignDashboardScreen(model))

    def start_foreign_verify(self, model: ForeignDashboardModel) -> None:
        if self._foreign_verify_cancel is not None:
            self.notify("A verify is already running.", severity="warning")
            return
        model.start_verify()
        self._foreign_verify_cancel = self.services.cancel_token()
        self._tell_foreign_dashboard()
        self._foreign_verify(model.migration_id, self._foreign_verify_cancel)

    @work(thread=True, exit_on_error=False, group="foreign-verify",
          description="Verifying the foreign source against the target")
    def _foreign_verify(self, migration_id: str, cancel: CancelToken) -> None:
        def on_table(verdict: Any) -> None:
            self.post_message(ForeignTableVerified(migration_id, verdict))

        try:
            report = self.services.foreign_verify(migration_id, on_table, cancel)
        except Exception as exc:
            self.post_message(ForeignVerifyFinished(migration_id, None, as_user_error(exc)))
            return
        self.post_message(ForeignVerifyFinished(migration_id, report, None))

    @on(ForeignTableVerified)
    def _foreign_table_verified(self, message: ForeignTableVerified) -> None:
        model = self.foreign_dashboards.get(message.migration_id)
        if model is not None:
            model.table_verified(message.verdict)
            self._tell_foreign_dashboard()

    @on(ForeignVerifyFinished)
    def _foreign_verify_finished(self, message: ForeignVerifyFinished) -> None:
        self._foreign_verify_cancel = None
        model = self.foreign_dashboards.get(message.migration_id)
        if model is not None:
            model.verify_finished(message.report, self.wall_clock())
            self._tell_foreign_dashboard()
        if message.error is not None and not self._exit_when_idle:
            self.show_error(message.error)

    def _tell_foreign_dashboard(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ForeignDashboardScreen):
                screen.post_message(ForeignDashboardUpdated())

    # -- teardown -----------------------------------------------------------------------------------------

    def start_teardown(self) -> None:
        model = self.dashboard
        if model is None or model.torn_down:
            return
        self._teardown(model.plan, list(model.databases))

    @work(thread=True, exit_on_error=False, exclusive=True, group="teardown", description="Tearing down replication")
    def _teardown(self, plan: Plan, databases: list[str]) -> None:
        removed = self.services.teardown(plan, databases, lambda event: None)
        self.post_message(TeardownFinished(removed))

    @on(TeardownFinished)
    def _torn_down(self, message: TeardownFinished) -> None:
        model = self.dashboard
        if model is not None:
            model.torn_down = True
        self._stop_polling()
        self.notify("Removed " + (", ".join(message.removed) or "nothing: nothing was left"), title="Teardown",
                    timeout=8)
        self._tell_dashboard("teardown")

    # -- quitting -----------------------------------------------------------------------------------------------

    @property
    def _migration_outlives_app(self) -> bool:
        return self.migration_running and bool(getattr(self.services, "detached", False)) \
            and self.quit_warning is None

    def _busy(self) -> list[str]:
        """What quitting now would stop, one sentence each; empty when nothing is lost."""
        busy = []
        if self._migration_outlives_app:
            pass  # asked separately: leave it running, or stop it
        elif self.migration_running:
            busy.append("A migration is copying: it will be cancelled (what this run created is removed; running "
                        "it again continues).")
        if self.foreign_running:
            busy.append("A copy from the foreign source is running: it will be cancelled (tables copied so far "
                        "are kept; starting it again resumes).")
        if (self.dashboard is not None and self.dashboard.verify_state == "running") \
                or self._foreign_verify_cancel is not None:
            busy.append("Verify is running: it will be stopped, with no result.")
        streaming = (self.migration is not None and self.migration.state == "streaming") or (
            self.dashboard is not None and not self.dashboard.torn_down)
        if streaming and self.quit_warning is None:
            # Replication runs in the servers (the target's subscription), not in this app.
            busy.append("Replication keeps streaming on the servers after pgtide quits: only this app's watching "
                        "stops. Reopen it with `pgtide --dashboard` (same profile or URLs), or use `pgtide status`.")
        if self.quit_warning is not None and (busy or streaming or self.migration is not None):
            busy.append(self.quit_warning)
        return busy

    async def action_quit(self) -> None:
        if self._migration_outlives_app:
            def chosen(answer: str | None) -> None:
                if answer == "leave":
                    self.services.detach()
                    self.shut_down(keep_migration=True)
                elif answer == "stop":
                    self.shut_down()

            others = [line for line in self._busy() if not line.startswith("Replication keeps streaming")]
            self.push_screen(ChoiceModal(
                "Quit pgtide?",
                "A migration is copying in its own worker process. Leave it running (it goes on without the app: "
                "`pgtide migrations`, `pgtide attach`), or stop it (what this run created is removed; running it "
                "again continues)." + ("\n\n" + "\n\n".join(others) if others else ""),
                [("leave", "Leave it running"), ("stop", "Stop it"), ("stay", "Stay")], cancel="stay"), chosen)
            return
        busy = self._busy()
        if not busy:
            self.shut_down()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.shut_down()

        self.push_screen(ConfirmModal("Quit pgtide?", "\n\n".join(busy), yes="Quit", no="Stay"), answered)

    def shut_down(self, *, keep_migration: bool = False) -> None:
        """Cancel the long jobs (cleaning up on the servers), then exit once they have stopped;
        ``keep_migration``: the migration's worker goes on (the app only stops following it)."""
        self._exit_when_idle = True
        if self.migration_running and not keep_migration:
            self.cancel_migration()
        if self._verify_run is not None:
            self._verify_run.cancel()
        if self._foreign_verify_cancel is not None:
            self._foreign_verify_cancel.cancel()
        if self.foreign_running:
            self.cancel_foreign_migration()
        self._stop_polling(release=False)
        self._exit_if_idle()

    def _exit_if_idle(self) -> None:
        if not self._exit_when_idle:
            return
        if any(worker.group in LONG_JOB_GROUPS and worker.state in (WorkerState.PENDING, WorkerState.RUNNING)
               for worker in self.workers):
            self.notify("Stopping…", timeout=3)
            return
        self.exit(0)

    # -- help ---------------------------------------------------------------------------------------------

    def action_help(self) -> None:
        from ..screens.base import PgtideScreen
        from ..screens.help import help_text

        screen = self.screen
        if isinstance(screen, InfoModal):
            screen.dismiss(None)
            return
        if not isinstance(screen, PgtideScreen):
            return  # a dialog says what it asks; its keys are on its buttons
        self.push_screen(InfoModal(f"Help: {screen.STEP or 'pgtide'}", help_text(screen)))

    # -- command palette ---------------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        commands = [
            SystemCommand("New migration", "Start the wizard with empty connection forms", self.new_wizard),
            SystemCommand("Start screen", "Saved profiles and new migrations", self.show_start),
            SystemCommand("Where is the log file?", "Show the path of pgtide's log file", self._show_log_path),
        ]
        if self.migration is not None:
            commands.append(SystemCommand("Show the running migration", "Phases, progress and log", self.show_run))
        if self.foreign_run is not None:
            commands.append(SystemCommand("Show the foreign copy", "Per-table progress and log",
                                          self.show_foreign_run))
        if self.migration is not None and self.migration.state == "streaming":
            commands.append(SystemCommand("Open the dashboard", "Lag, tables, verify and teardown",
                                          partial(self.open_dashboard, self.migration.plan)))
        # Every action of the screen in front, so nothing is reachable by key only.
        for binding in getattr(screen, "BINDINGS", ()):
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if screen.check_action(binding.action.split("(")[0], ()) is False:
                continue
            if any(command.title == binding.description for command in commands):
                continue
            commands.append(SystemCommand(binding.description, f"{getattr(screen, 'STEP', '') or 'This screen'}: "
                                          f"key {binding.key.split(',')[0]}", partial(screen.run_action, binding.action)))
        commands.append(SystemCommand("Help for this screen", "Its fields, states and keys (? or F1)",
                                      self.action_help))
        yield from commands
        # Textual's "Keys" panel lists its own bindings (^c Quit) and Esc in it reached the screen
        # below (the Start screen): the help screen above replaces it.
        yield from (command for command in super().get_system_commands(screen) if command.title != "Keys")

    def _show_log_path(self) -> None:
        self.notify(str(self.services.log_file()), title="Log file", timeout=10)


# -- running it ---------------------------------------------------------------------------------------------


def run_app(app: PgtideApp) -> int:
    """Run ``app`` in this terminal.

    SIGTERM and SIGHUP (the terminal went away) shut it down like Ctrl-Q: running jobs are
    cancelled and clean up on the servers, then the app exits and the caller's ``finally``
    runs. A second signal stops at once.
    """
    import signal

    def on_signal(signum: int, frame: object) -> None:
        loop = app.event_loop
        if loop is None or app.shutting_down:
            raise KeyboardInterrupt
        loop.call_soon_threadsafe(app.shut_down)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        app.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return app.return_code or 0


def run_tui(*, profile: str | None = None, source: str | None = None, target: str | None = None,
            dashboard: bool = False) -> int:
    return run_app(PgtideApp(profile=profile, source=source, target=target, dashboard=dashboard))
