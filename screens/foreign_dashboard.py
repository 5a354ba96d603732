"""The dashboard of a migration from a foreign source (SQLite, MySQL/MariaDB, MongoDB).

What `pgtide status --migration ID` says, live: source and target, the state, how the target
is kept in sync (the change log, a refresh every interval, or not at all), the lag or the last
refresh, each table's copy, and the migration's worker. v verifies (the App runs it: leaving
the screen does not stop it), s starts the sync in the worker, x stops the worker.

The screen polls ``Services.foreign_status`` itself, one poll at a time, re-armed after each
(every 2 s at the app's default pace), and skips its turn while it is not the screen in front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Header, Sparkline, Static

from ..core.infra.errors import CannotStream, PgtideError
from ..widgets.formatting import human_count, human_seconds
from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal, NamePrompt
from .base import PgtideScreen
from .foreign_state import KIND_NAMES, ForeignDashboardModel
from .messages import ForeignDashboardRead, ForeignDashboardUpdated, ForeignPolled

if TYPE_CHECKING:
    from ..core.foreign.verify import TableVerdict

COLUMNS = ("table", "copy", "rows", "verify")
DIFFERENCES_SHOWN = 8
IDS_SHOWN = 5
STATE_STYLES = {"streaming": "bold green", "copied": "bold green", "copying": "bold cyan", "failed": "bold red",
                "torn_down": "dim"}


def sync_text(model: ForeignDashboardModel) -> str:
    status, plan = model.status, model.plan
    mode = status.mode if status is not None else "copy"
    if mode == "stream":
        return "stream: the source's change log, applied as it commits"
    if mode == "refresh":
        every = plan.refresh_every if plan is not None else None
        return f"refresh every {human_seconds(every)} (re-reads the tables, applies the differences by id)" \
            if every else "refresh (re-reads the tables, applies the differences by id)"
    return "copy only (no sync started)"


def worker_text(model: ForeignDashboardModel) -> Text:
    worker = model.worker
    state = str(worker.get("state") or "none")
    if state == "alive":
        return Text.assemble((f"running (pid {worker.get('pid')})", "green"))
    if state == "none":
        return Text("none")
    if state == "dead":
        return Text.assemble(("dead (ended without a word)", "red"))
    return Text(state.replace("finished", "stopped, exit"))


def lag_line(model: ForeignDashboardModel, now: float) -> Text:
    status = model.status
    text = Text()
    if status is None:
        return text
    if status.mode == "refresh" and status.last_refresh:
        refresh = status.last_refresh
        text.append("Last refresh ", style="bold")
        text.append(f"{refresh.get('inserted', 0):,} inserted, {refresh.get('updated', 0):,} updated, "
                    f"{refresh.get('deleted', 0):,} deleted")
        if refresh.get("reloaded"):
            text.append(f", {refresh['reloaded']} reloaded whole")
        at = refresh.get("at")
        if at:
            text.append(f" · {human_seconds(max(0.0, now - float(at)))} ago")
        if refresh.get("seconds") is not None:
            text.append(f" · took {float(refresh['seconds']):.1f} s", style="dim")
        return text
    text.append("Lag ", style="bold")
    if not model.worker_alive:
        text.append("– no worker keeps the target in sync", style="dim")
        if model.copied:
            text.append(": s starts one", style="dim")
    elif status.lag_seconds is None:
        text.append("unknown (nothing applied since the worker started)", style="dim")
    else:
        text.append(f"{status.lag_seconds:.1f} s")
    return text


def status_lines(model: ForeignDashboardModel, now: float) -> Text:
    status = model.status
    if status is None:
        return Text("waiting for the first status…", style="dim")
    state = status.state or "nothing recorded"
    text = Text.assemble(("State ", "bold"), ("● " + state.replace("_", " "), STATE_STYLES.get(state, "")))
    text.append("\nSync ", style="bold")
    text.append(sync_text(model))
    text.append("\nWorker ", style="bold")
    text.append_text(worker_text(model))
    if model.action:
        text.append(f" · {model.action}…", style="cyan")
    line = lag_line(model, now)
    if line:
        text.append("\n")
        text.append_text(line)
    if status.position:
        text.append("\nPosition ", style="bold")
        text.append(status.position, style="dim")
    return text


def sparkline_label(samples: list[float]) -> str:
    if not samples:
        return "lag, last minutes"
    peak = max(samples)
    if peak <= 0:
        return f"lag, last {len(samples)} polls: always 0"
    return f"lag, last {len(samples)} polls: 0 … {peak:.1f} s"


def copy_cell(entry: dict[str, object]) -> Text:
    state = str(entry.get("state") or "")
    if state == "copied":
        return Text.assemble(("✔ copied", "green"))
    if state == "copying":
        return Text.assemble(("● copying", "cyan"))
    return Text(state or "–", style="dim")


def verify_cell(verdict: TableVerdict | None) -> Text:
    if verdict is None:
        return Text("not verified", style="dim")
    if verdict.skipped:
        return Text(f"– {verdict.skipped}", style="dim")
    if verdict.ok:
        return Text("✔ match", style="green")
    found = verdict.missing_count + verdict.extra_count + verdict.different_count
    return Text(f"✖ {found:,} differ" if found else "✖ counts differ", style="bold red")


def verify_headline(model: ForeignDashboardModel) -> Text:
    if model.verify_state == "running":
        return Text.assemble((f"● verifying ({model.verify_done}/{model.verify_total} tables)", "cyan"))
    if model.verify_state == "failed":
        return Text.assemble(("✖ verify failed: see the error · v tries again", "red"))
    report = model.verify_report
    if model.verify_state == "done" and report is not None:
        when = f" at {model.verify_finished_at:%H:%M:%S}" if model.verify_finished_at is not None else ""
        differing = [t for t in report.tables if not t.ok]
        if not differing:
            return Text.assemble((f"✔ last verify{when}: all {len(report.tables)} table(s) match", "bold green"),
                                 (f" (took {report.seconds:.1f} s) · v verifies again", "dim"))
        return Text.assemble((f"✖ last verify{when}: {len(differing)} of {len(report.tables)} table(s) differ",
                              "bold red"), (" · v verifies again", "dim"))
    return Text("Not verified yet: v compares row counts and every row's hash on both sides.", style="dim")


def differences_text(model: ForeignDashboardModel) -> Text:
    """Each differing table with its counts and the first differing ids."""
    differing = [v for name, v in sorted(model.verify_results.items()) if not v.ok]
    text = Text()
    for index, verdict in enumerate(differing[:DIFFERENCES_SHOWN]):
        if index:
            text.append("\n")
        text.append(f"{verdict.table}: ", style="bold")
        text.append(f"source {verdict.source_rows:,} rows, target {verdict.target_rows:,}; "
                    f"{verdict.missing_count:,} missing on the target, {verdict.extra_count:,} extra, "
                    f"{verdict.different_count:,} different")
        ids = [f"{label} {', '.join(found[:IDS_SHOWN])}{' …' if len(found) > IDS_SHOWN else ''}"
               for label, found in (("missing", verdict.missing), ("extra", verdict.extra),
                                    ("different", verdict.different)) if found]
        if ids:
            text.append("\n  ids " + " · ".join(ids), style="dim")
    if len(differing) > DIFFERENCES_SHOWN:
        text.append(f"\n… and {len(differing) - DIFFERENCES_SHOWN} more", style="dim")
    return text


class ForeignDashboardScreen(PgtideScreen):
    STEP = "Dashboard"

    BINDINGS = [
        Binding("v", "verify", "Verify now"),
        Binding("s", "start_sync", "Start sync"),
        Binding("x", "stop_worker", "Stop worker"),
        Binding("r", "poll_now", "Refresh", show=False),
        Binding("escape", "leave", "Start screen"),
    ]

    def __init__(self, model: ForeignDashboardModel) -> None:
        super().__init__()
        self.model = model
        self._timer: Timer | None = None
        self._shown: dict[str, tuple[object, ...]] = {}
        self._polling = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="fdash-body"):
            with Vertical(id="fdash-panel"):
                yield Static("", id="fdash-endpoints", markup=False)
                with Horizontal(id="fdash-row"):
                    yield Static("", id="fdash-lines", markup=False)
                    with Vertical(id="fdash-graph"):
                        yield Static("lag, last minutes", id="fdash-graph-label", markup=False)
                        yield Sparkline([], summary_function=max)
            yield Static("", id="fdash-verify", markup=False)
            yield LiveTable(id="fdash-tables", cursor_type="row", zebra_stripes=True)
            yield Static("", id="fdash-differences", markup=False)
        with Horizontal(classes="button-row"):
            yield Button("Start screen", id="leave")
            yield Button("Verify now", id="verify", variant="primary")
            yield Button("Start sync", id="start-sync")
            yield Button("Stop worker", id="stop-worker", variant="error")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#fdash-tables", DataTable)
        for label, key, width in zip(("Table", "Copy", "Rows", "Last verify"), COLUMNS, (None, 12, 14, 18),
                                     strict=True):
            table.add_column(label, key=key, width=width)
        self.query_one("#fdash-panel").border_title = f"migration {self.model.migration_id}"
        self.redraw()
        if self.model.plan is None:
            self._read(self.model.migration_id)
        else:
            self._poll_now()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    # -- reading ------------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="foreign-dashboard", description="Opening the dashboard")
    def _read(self, migration_id: str) -> None:
        plan = self.services.foreign_plan(migration_id)
        self.post_message(ForeignDashboardRead(plan, self.services.foreign_lag_history(migration_id)))

    @on(ForeignDashboardRead)
    def _plan_read(self, message: ForeignDashboardRead) -> None:
        self.model.plan = message.plan
        self.model.restore(message.lag)
        self.redraw()
        self._poll_now()

    @property
    def poll_seconds(self) -> float:
        # Twice the PostgreSQL dashboard's pace: a status reads the record and the target.
        return 2.0 * self.pgtide.poll_seconds

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(max(0.01, self.poll_seconds), self._tick, name="foreign-poll")

    def _tick(self) -> None:
        self._timer = None
        if self.app.screen is not self or self.pgtide.shutting_down:
            self._schedule()  # under a modal, or another screen in front: not now
            return
        self._poll_now()

    def _poll_now(self) -> None:
        if self._polling:
            return
        self._polling = True
        self._poll(self.model.migration_id)

    @work(thread=True, exit_on_error=False, group="foreign-poll", description="Reading the migration's status")
    def _poll(self, migration_id: str) -> None:
        try:
            status = self.services.foreign_status(migration_id)
        except PgtideError as exc:
            self.post_message(ForeignPolled(None, exc))  # shown in place: a modal every 2 s would not do
            return
        except Exception:
            self.post_message(ForeignPolled(None, None))  # polling goes on; the error modal says what failed
            raise
        self.post_message(ForeignPolled(status, None))

    @on(ForeignPolled)
    def _polled(self, message: ForeignPolled) -> None:
        self._polling = False
        if message.status is not None:
            self.model.record(message.status, self.pgtide.wall_clock().timestamp())
        else:
            self.model.poll_error = message.error
        self.redraw()
        self._schedule()

    @on(ForeignDashboardUpdated)
    def _updated(self) -> None:
        self.redraw()

    # -- drawing ----------------------------------------------------------------------------------

    def redraw(self) -> None:
        model = self.model
        now = model.polled_at if model.polled_at is not None else self.pgtide.wall_clock().timestamp()
        with self.app.batch_update():
            plan = model.plan
            if plan is not None:
                kind = KIND_NAMES.get(plan.source.kind, plan.source.kind)
                self.query_one("#fdash-panel").border_title = f"migration {model.migration_id} · {kind} → " \
                                                               f"PostgreSQL · {plan.layout} layout"
                endpoints = Text.assemble(("Source ", "bold"), plan.source.redacted(), "\n",
                                          ("Target ", "bold"), plan.target.redacted())
                self.query_one("#fdash-endpoints", Static).update(endpoints)
            else:
                self.query_one("#fdash-endpoints", Static).update(Text("Reading the migration's record…",
                                                                       style="dim"))
            lines = status_lines(model, now)
            if model.poll_error is not None:
                lines.append(f"\n✖ {model.poll_error.cause} ({model.poll_error.remedy})", style="red")
            self.query_one("#fdash-lines", Static).update(lines)
            samples = list(model.lag_history)
            self.query_one(Sparkline).data = samples if samples and max(samples) > 0 else []
            self.query_one("#fdash-graph-label", Static).update(sparkline_label(samples))
            self._draw_tables()
            self.query_one("#fdash-verify", Static).update(verify_headline(model))
            self.query_one("#fdash-differences", Static).update(differences_text(model))
            for button_id, action in (("#verify", "verify"), ("#start-sync", "start_sync"),
                                      ("#stop-worker", "stop_worker")):
                self.query_one(button_id, Button).disabled = not self.check_action(action, ())
        self.refresh_bindings()

    def _draw_tables(self) -> None:
        table = self.query_one("#fdash-tables", DataTable)
        status = self.model.status
        if status is None:
            return
        for name in self.model.table_names:
            entry = status.tables[name]
            rows = entry.get("rows")
            cells = (name, copy_cell(entry), human_count(rows) if isinstance(rows, int) else "–",
                     verify_cell(self.model.verify_results.get(name)))
            previous = self._shown.get(name)
            if previous is None:
                table.add_row(*cells, key=name)
            elif previous != cells:
                for column, old, new in zip(COLUMNS, previous, cells, strict=True):
                    if old != new:
                        table.update_cell(name, column, new)
            self._shown[name] = cells

    # -- actions ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        model = self.model
        if action == "verify":
            return model.plan is not None and model.verify_state != "running" and bool(model.table_names)
        if action == "start_sync":
            return model.action is None and model.copied and not model.worker_alive
        if action == "stop_worker":
            return model.action is None and model.worker_alive
        return True

    def action_verify(self) -> None:
        if self.check_action("verify", ()):
            self.pgtide.start_foreign_verify(self.model)

    def action_poll_now(self) -> None:
        self._poll_now()

    def action_start_sync(self) -> None:
        if not self.check_action("start_sync", ()):
            return
        self.model.action = "starting the sync"
        self.redraw()
        self._start_sync(self.model.migration_id)

    @work(thread=True, exit_on_error=False, group="foreign-action", description="Starting the sync's worker")
    def _start_sync(self, migration_id: str, refresh_every: str | None = None) -> None:
        try:
            mode = self.services.foreign_start_sync(migration_id, refresh_every=refresh_every)
        except CannotStream as exc:
            # No change log to follow: offer what the CLI offers, a re-read every interval.
            self.app.call_from_thread(self._ask_refresh, migration_id, exc)
            return
        finally:
            self.app.call_from_thread(self._action_done)
        shown = {"stream": "streaming the source's changes", "refresh": "refreshing every interval"}.get(mode, mode)
        self.app.call_from_thread(self.pgtide.notify, f"The worker of {migration_id} is {shown}.",
                                  title="Sync started", timeout=8)

    def _ask_refresh(self, migration_id: str, refusal: CannotStream) -> None:
        def answered(value: str | None) -> None:
            if value:
                self.model.action = "starting the sync"
                self.redraw()
                self._start_sync(migration_id, value)

        self.app.push_screen(NamePrompt(
            "Re-read the source every", value="30s",
            hint=f"{refusal.cause}. Instead, the worker can re-read every table at this interval (30s, 5m, 1h) "
                 "and apply what changed by key; Cancel starts nothing."), answered)

    def action_stop_worker(self) -> None:
        model = self.model
        if not self.check_action("stop_worker", ()) or model.plan is None:
            return
        plan = model.plan
        if model.status is not None and model.status.mode == "refresh":
            what = (f"The worker stops re-reading {plan.source.redacted()}: changes made there from now on do not "
                    f"reach {plan.target.redacted()} until a sync runs again (s).")
        else:
            what = (f"The worker stops applying the changes of {plan.source.redacted()} to "
                    f"{plan.target.redacted()}. A sync started again (s) continues from the position the target "
                    "recorded: nothing is lost meanwhile, as long as the source keeps its change log.")
        question = (what + "\n\nThe target keeps its tables and every row already copied or applied; nothing on "
                    "the source changes.")
        if model.verify_state == "running":
            question += " Verify goes on (it reads both sides; rows changing meanwhile may show as different)."

        def answered(yes: bool | None) -> None:
            if yes:
                model.action = "stopping the worker"
                self.redraw()
                self._stop(model.migration_id)

        self.app.push_screen(ConfirmModal("Stop the sync's worker?", question, yes="Stop the worker",
                                          no="Keep it running"), answered)

    @work(thread=True, exit_on_error=False, group="foreign-action", description="Stopping the migration's worker")
    def _stop(self, migration_id: str) -> None:
        try:
            phase = self.services.foreign_stop(migration_id)
        finally:
            self.app.call_from_thread(self._action_done)
        self.app.call_from_thread(self.pgtide.notify, f"The worker of {migration_id} stopped (it was {phase}); the "
                                  "target keeps its rows.", title="Worker stopped", timeout=8)

    def _action_done(self) -> None:
        self.model.action = None
        self._poll_now()
        self.redraw()

    def action_leave(self) -> None:
        self.pgtide.show_start()

    @on(Button.Pressed, "#verify")
    def _verify_pressed(self) -> None:
        self.action_verify()

    @on(Button.Pressed, "#start-sync")
    def _start_pressed(self) -> None:
        self.action_start_sync()

    @on(Button.Pressed, "#stop-worker")
    def _stop_pressed(self) -> None:
        self.action_stop_worker()

    @on(Button.Pressed, "#leave")
    def _leave_pressed(self) -> None:
        self.action_leave()
