"""Dashboard: each database's replication live, a per-table view, verify now, teardown.

The App polls (one poll at a time, re-armed after each, paused under modals) and verifies;
this screen draws ``PgtideApp.dashboard`` when told it changed. The per-table view is
updated by row key, cell by cell, never rebuilt: with 1,000 tables a rebuild each second
would cost more than the poll.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Footer, Header, Static

from ..core.model.selection import format_qualified_name
from ..widgets.database_panel import DatabasePanel
from ..widgets.formatting import human_count
from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal
from .base import PgtideScreen
from .messages import DashboardUpdated
from .state import DashboardModel, DashboardTable, lag_samples, table_key_text

if TYPE_CHECKING:
    from ..core.model.plan import Plan
    from ..core.monitor.poll import DatabaseStatus
    from ..core.verify.compare import TableResult

COLUMNS = ("table", "mode", "state", "rows", "verify")
DIFFERENCES_SHOWN = 8


def verify_cell(result: TableResult | None) -> Text:
    if result is None:
        return Text("not verified", style="dim")
    if result.status == "match":
        return Text("✔ match", style="green")
    if result.status == "skipped":
        return Text("– skipped", style="dim")
    if result.status == "error":
        return Text("✖ error", style="red")
    if result.status == "schema_differs":
        return Text("✖ schema differs", style="red")
    return Text(f"✖ {result.difference_count:,} differ", style="bold red")


def rows_cell(table: DashboardTable, result: TableResult | None) -> str:
    if table.mode == "schema-only":
        return "–"  # no rows are copied, whatever the source holds
    if result is not None and result.source_rows is not None:
        return human_count(result.source_rows)
    return human_count(table.rows_estimate, approximate=True)


def table_cells(model: DashboardModel, table: DashboardTable, multiple_databases: bool) -> tuple[object, ...]:
    result = model.verify_results.get(table.key)
    name = format_qualified_name((table.schema, table.name))
    if multiple_databases:
        name = f"{table.database}.{name}"
    return (name, table.mode, model.table_state(table), rows_cell(table, result), verify_cell(result))


def verify_headline(model: DashboardModel) -> Text:
    """One line: what verify is doing, or what it found last time."""
    if model.verify_state == "running":
        return Text.assemble((f"● verifying {model.verify_current} ({model.verify_done}/{model.verify_total} tables)",
                              "cyan"))
    if model.verify_state == "failed":
        return Text.assemble(("✖ verify failed: see the error", "red"))
    report = model.verify_report
    if model.verify_state == "done" and report is not None:
        differing = report.differing_tables
        when = f" at {model.verify_finished_at:%H:%M:%S}" if model.verify_finished_at is not None else ""
        if not differing:
            return Text.assemble((f"✔ last verify{when}: all {len(report.tables)} table(s) match", "bold green"),
                                 (f" (took {report.seconds:.1f} s) · v verifies again", "dim"))
        return Text.assemble((f"✖ last verify{when}: {len(differing)} of {len(report.tables)} table(s) differ",
                              "bold red"), (" · v verifies again", "dim"))
    recorded = model.recorded_verify
    if recorded is not None and recorded.get("at"):
        at = datetime.fromtimestamp(float(recorded["at"]))
        day = "" if at.date() == datetime.now().date() else f"{at:%Y-%m-%d} "
        if recorded.get("ok"):
            return Text.assemble((f"✔ last verify {day}{at:%H:%M:%S}: all {recorded.get('tables', '?')} table(s) "
                                  "match", "green"), (" (from the migration's record) · v verifies again", "dim"))
        found = sum(int(recorded.get(k, 0) or 0) for k in ("missing", "extra", "different"))
        return Text.assemble((f"✖ last verify {day}{at:%H:%M:%S}: {found:,} difference(s)", "red"),
                             (" (from the migration's record) · v lists them again", "dim"))
    return Text.assemble(("Not verified yet: press v to compare every table, row by row.", "dim"))


def differences_text(model: DashboardModel) -> Text:
    """The differing tables of the last verify, with the first differing keys of each."""
    report = model.verify_report
    if report is None or model.verify_state != "done":
        return Text("")
    text = Text()
    differing = report.differing_tables
    for index, result in enumerate(differing[:DIFFERENCES_SHOWN]):
        if index:
            text.append("\n")
        text.append(f"{result.display}: ", style="bold")
        if result.error:
            text.append(result.error)
            continue
        text.append(f"{result.missing} missing on the target, {result.extra} extra, {result.different} different")
        if result.differences:
            keys = "; ".join(diff.describe(result.key_columns) for diff in result.differences[:3])
            text.append(f"\n  {keys}", style="dim")
    if len(differing) > DIFFERENCES_SHOWN:
        text.append(f"\n… and {len(differing) - DIFFERENCES_SHOWN} more", style="dim")
    return text


class DashboardScreen(PgtideScreen):
    STEP = "Dashboard"

    BINDINGS = [
        Binding("v", "verify", "Verify now"),
        Binding("t", "teardown", "Teardown"),
        Binding("c", "cutover", "Cut over"),
        Binding("a", "apply_schema", "Apply schema"),
        Binding("e", "enable_apply", "Enable apply"),
        Binding("k", "skip_failed", "Skip failed txn"),
        Binding("escape", "leave", "Start screen"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, tuple[object, ...]] = {}
        self._panels_for: tuple[str, ...] = ()
        self._panels: list[DatabasePanel] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="dashboard-body"):
            yield VerticalScroll(id="panels")
            yield Static("", id="verify-status", markup=False)
            yield LiveTable(id="dashboard-tables", cursor_type="row", zebra_stripes=True)
            yield Static("", id="differences", markup=False)
        with Horizontal(classes="button-row"):
            yield Button("Start screen", id="leave")
            yield Button("Verify now", id="verify", variant="primary")
            yield Button("Cut over", id="cutover", variant="warning")
            yield Button("Teardown", id="teardown", variant="error")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#dashboard-tables", DataTable)
        # Columns whose cells change get a fixed width: re-measuring a column on every update is
        # what makes a 1,000-row table slow (each narrower cell re-measures the whole column).
        for label, key, width in zip(("Table", "Mode", "State", "Rows", "Last verify"), COLUMNS,
                                     (None, 11, 14, 14, 18), strict=True):
            table.add_column(label, key=key, width=width)
        self.redraw()

    @property
    def model(self) -> DashboardModel | None:
        return self.pgtide.dashboard

    @on(DashboardUpdated)
    def _updated(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        model = self.model
        if model is None:
            self.query_one("#verify-status", Static).update("Reading the migration's tables…")
            return
        with self.app.batch_update():
            self._draw_panels(model)
            self._draw_tables(model)
            self._draw_verify(model)
            self.query_one("#verify", Button).disabled = model.verify_state == "running" or model.torn_down
            self.query_one("#teardown", Button).disabled = model.torn_down
            self.query_one("#cutover", Button).disabled = not self._cutover_ready(model)
        self.refresh_bindings()

    def _draw_panels(self, model: DashboardModel) -> None:
        container = self.query_one("#panels", VerticalScroll)
        wanted = tuple(model.databases)
        if wanted != self._panels_for:
            container.remove_children()
            self._panels = [DatabasePanel(name) for name in wanted]
            container.mount_all(self._panels)
            self._panels_for = wanted
        for panel in self._panels:
            status = model.latest.database(panel.database) if model.latest else None
            panel.show(status, lag_samples(model, panel.database), torn_down=model.torn_down)
        if model.poll_error is not None:
            self.query_one("#verify-status", Static).update(
                Text(f"✖ {model.poll_error.cause} ({model.poll_error.remedy})", style="red"))

    def _draw_tables(self, model: DashboardModel) -> None:
        table = self.query_one("#dashboard-tables", DataTable)
        multiple = len(model.databases) > 1
        for entry in model.tables:
            key = table_key_text(entry.key)
            cells = table_cells(model, entry, multiple)
            previous = self._shown.get(key)
            if previous is None:
                table.add_row(*cells, key=key)
            elif previous != cells:
                for column, old, new in zip(COLUMNS, previous, cells, strict=True):
                    if old != new:
                        table.update_cell(key, column, new)
            self._shown[key] = cells

    def _draw_verify(self, model: DashboardModel) -> None:
        if model.poll_error is None:
            self.query_one("#verify-status", Static).update(verify_headline(model))
        self.query_one("#differences", Static).update(differences_text(model))

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        model = self.model
        if action == "verify":
            return model is not None and model.verify_state != "running" and not model.torn_down
        if action == "teardown":
            return model is not None and not model.torn_down
        if action == "cutover":
            return model is not None and self._cutover_ready(model)
        if action == "apply_schema":
            return model is not None and bool(self._drifted(model))
        if action in ("enable_apply", "skip_failed"):
            return model is not None and bool(self._stopped(model, need_lsn=action == "skip_failed"))
        return True

    def action_verify(self) -> None:
        self.pgtide.start_verify()

    def action_teardown(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.pgtide.start_teardown()

        model = self.model
        question = ("The subscription on the target, and the replication slot and publication on the source, are "
                    "removed: changes stop flowing, and this cannot be resumed. The copied data stays on the target.")
        report = model.verify_report if model is not None and model.verify_state == "done" else None
        if model is not None and model.verify_state == "running":
            question += "\n\nVerify is still running: its result will be incomplete."
        elif report is None:
            question += "\n\nThis migration has not been verified in this session: press v first to compare every row."
        elif report.differing_tables:
            names = ", ".join(result.display for result in report.differing_tables[:3])
            question += (f"\n\n▲ The last verify found differences in {len(report.differing_tables)} table(s) "
                         f"({names}). After teardown they are no longer corrected by replication.")
        self.app.push_screen(ConfirmModal("Tear down the replication?", question, yes="Teardown",
                                          no="Keep replicating"), answered)

    @staticmethod
    def _cutover_ready(model: DashboardModel) -> bool:
        """Offered once every database streams (the Cutover screen's preflight checks the rest)."""
        if model.torn_down or model.latest is None or model.verify_state == "running":
            return False
        return bool(model.databases) and all(
            (status := model.latest.database(name)) is not None and str(status.state) == "streaming"
            for name in model.databases)

    # -- keeping the sync healthy: drift, apply errors --------------------------------------------

    @staticmethod
    def _statuses(model: DashboardModel) -> list[DatabaseStatus]:
        if model.latest is None or model.torn_down:
            return []
        return [s for name in model.databases if (s := model.latest.database(name)) is not None]

    def _drifted(self, model: DashboardModel) -> list[DatabaseStatus]:
        return [s for s in self._statuses(model) if s.drift is not None and s.drift.statements]

    def _stopped(self, model: DashboardModel, *, need_lsn: bool) -> list[DatabaseStatus]:
        return [s for s in self._statuses(model) if s.target.exists and not s.target.enabled
                and (s.target.apply_error_count or s.target.last_error)
                and (not need_lsn or s.target.failed_lsn is not None)]

    def action_apply_schema(self) -> None:
        model = self.model
        drifted = self._drifted(model) if model is not None else []
        if model is None or not drifted:
            return
        status = drifted[0]
        assert status.drift is not None
        listed = "\n".join(f"  [{s.server}] {s.sql}" for s in status.drift.statements)

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(model.plan, "apply", status.database)

        self.app.push_screen(ConfirmModal(f"Apply the schema changes on {status.database}'s target?",
                                          f"pgtide runs, in this order:\n{listed}\n\nOnly additive statements; "
                                          "the subscription then picks the new columns or tables up.",
                                          yes="Apply", no="Cancel"), answered)

    def action_enable_apply(self) -> None:
        model = self.model
        stopped = self._stopped(model, need_lsn=False) if model is not None else []
        if model is None or not stopped:
            return
        status = stopped[0]

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(model.plan, "enable", status.database)

        self.app.push_screen(ConfirmModal(f"Enable apply on {status.database}?",
                                          f"The subscription stopped on: {status.target.last_error or 'an error'}. "
                                          "Enable it once the cause is fixed (else it stops again at once).",
                                          yes="Enable", no="Cancel"), answered)

    def action_skip_failed(self) -> None:
        model = self.model
        stopped = self._stopped(model, need_lsn=True) if model is not None else []
        if model is None or not stopped:
            return
        status = stopped[0]
        lsn = status.target.failed_lsn
        assert lsn is not None

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(model.plan, "skip", status.database, lsn)

        self.app.push_screen(ConfirmModal(
            f"Skip the failing transaction on {status.database}?",
            f"{status.target.last_error or 'A change failed'}"
            + (f" (table {status.target.failed_table})" if status.target.failed_table else "")
            + ". Every change of that transaction — not only the failing row — is thrown away on the target: "
            "those rows will differ from the source. Verify afterwards (v): it names them.",
            yes="Skip it", no="Cancel"), answered)

    @work(thread=True, exit_on_error=False, group="dashboard-action", description="Changing the subscription")
    def _act(self, plan: Plan, what: str, database: str, lsn: int | None = None) -> None:
        if what == "apply":
            done = self.services.schema_apply(plan, database, lambda event: None)
            message = f"{database}: " + ("; ".join(done) or "nothing to apply")
        elif what == "enable":
            message = f"{database}: apply " + ("enabled" if self.services.enable_apply(plan, database,
                                                                                       lambda event: None)
                                               else "was already enabled")
        else:
            assert lsn is not None
            self.services.skip_failed_transaction(plan, database, lsn, lambda event: None)
            message = f"{database}: the failing transaction was skipped; verify now (v) to see which rows differ"
        self.app.call_from_thread(self.pgtide.notify, message, title="Subscription", timeout=10)

    def action_cutover(self) -> None:
        from .cutover import CutoverScreen

        model = self.model
        if model is not None and self._cutover_ready(model):
            self.app.push_screen(CutoverScreen(model.plan, tuple(model.databases)))

    def action_leave(self) -> None:
        self.pgtide.show_start()

    @on(Button.Pressed, "#verify")
    def _verify_pressed(self) -> None:
        self.action_verify()

    @on(Button.Pressed, "#cutover")
    def _cutover_pressed(self) -> None:
        self.action_cutover()

    @on(Button.Pressed, "#teardown")
    def _teardown_pressed(self) -> None:
        self.action_teardown()

    @on(Button.Pressed, "#leave")
    def _leave_pressed(self) -> None:
        self.action_leave()
