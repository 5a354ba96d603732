"""Run: the phases, per-table copy progress, throughput and ETA, the log.

The migration itself runs in the App's worker: this screen only draws ``PgtideApp.migration``
whenever the App says it changed, so leaving the screen (or coming back) changes nothing.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Log, ProgressBar, Static

from ..widgets.formatting import human_bytes, human_count, human_seconds, progress_text
from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal
from ..widgets.phase_list import PhaseList, index_progress_text
from .base import PgtideScreen
from .messages import RunUpdated
from .state import PHASES, RunModel, TableProgressRow, table_key_text

STATE_LINES = {
    "running": ("● copying", "cyan"),
    "streaming": ("✔ streaming: every change on the source now flows to the target", "green"),
    "failed": ("✖ failed: what this run created was removed; fix the cause and start again", "red"),
    "cancelling": ("● cancelling: stopping the copy and removing what it created…", "yellow"),
    "cancelled": ("✔ cancelled: replication objects removed from both servers", "yellow"),
}


def table_state(row: TableProgressRow) -> str:
    if row.done:
        return "copied"
    return "copying" if row.bytes_done or row.rows_done else "waiting"


class RunScreen(PgtideScreen):
    STEP = "5 Run"

    BINDINGS = [
        Binding("d", "dashboard", "Dashboard"),
        Binding("c", "cancel_run", "Cancel migration"),
        Binding("escape", "leave", "Start screen"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown_rows: dict[str, tuple[object, ...]] = {}
        self._log_shown = 0
        self._ticker: object | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="run-body"):
            with Horizontal(id="run-top"):
                yield PhaseList(id="phases")
                with Vertical(id="run-summary"):
                    yield Static("", id="run-state", markup=False)
                    yield ProgressBar(total=100, show_eta=False, id="run-progress")
                    yield Static("", id="run-figures", markup=False)
            # Shown from the index phase on: pg_restore's objects built so far, the one building.
            yield Static("", id="run-indexes", markup=False)
            yield LiveTable(id="run-tables", cursor_type="row", zebra_stripes=True)
            yield Log(id="run-log", max_lines=2000)
        with Horizontal(classes="button-row"):
            yield Button("Start screen", id="leave")
            yield Button("Cancel migration", id="cancel", variant="error")
            yield Button("Dashboard", id="dashboard", variant="primary", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#phases").border_title = "Phases"
        self.query_one("#run-log").border_title = "Log"
        table = self.query_one("#run-tables", DataTable)
        # Fixed widths for the cells that change: no column re-measured on every progress event.
        for label, key, width in (("Table", "table", None), ("Progress", "progress", 22), ("Copied", "bytes", 22),
                                  ("Rows", "rows", 14), ("State", "state", 8)):
            table.add_column(label, key=key, width=width)
        self.redraw()
        # Elapsed times move on between events (an index build can take minutes without one).
        self._ticker = self.set_interval(1.0, self._tick, name="run-elapsed")

    def _tick(self) -> None:
        model = self.model
        if model is not None and not model.finished and self.is_current:
            self._draw_phases(model)
            self._draw_summary(model)

    @on(RunUpdated)
    def _run_updated(self) -> None:
        self.redraw()

    @property
    def model(self) -> RunModel | None:
        return self.pgtide.migration

    def redraw(self) -> None:
        model = self.model
        if model is None:
            return
        with self.app.batch_update():
            self._draw_phases(model)
            self._draw_summary(model)
            self._draw_indexes(model)
            self._draw_tables(model)
            self._draw_log(model)
            finished = model.finished
            self.query_one("#dashboard", Button).disabled = model.state != "streaming"
            cancel = self.query_one("#cancel", Button)
            cancel.disabled = finished or model.state == "cancelling"
            # Once the copy is over there is nothing to cancel: replication is ended by teardown.
            cancel.display = not finished
        self.refresh_bindings()

    def _draw_phases(self, model: RunModel) -> None:
        phases = []
        for phase in PHASES:
            status = model.phase_status(phase)
            databases = model.phase_databases(phase)
            detail = ", ".join(databases) if status == "running" and phase != "validate" else ""
            elapsed = model.phase_elapsed(phase)
            if status == "running" and elapsed is not None:
                detail = f"{human_seconds(elapsed)} {detail}".strip()
            phases.append((phase, status, detail))
        self.query_one("#phases", PhaseList).show(phases)

    def _draw_summary(self, model: RunModel) -> None:
        label, style = STATE_LINES[model.state]
        if model.state == "running" and model.phase_status("indexes") == "running":
            label = "● building indexes and constraints"
        state = Text.assemble((label, f"bold {style}"))
        if model.error is not None and model.state == "failed":
            state.append(f"\n{model.error.title}: {model.error.cause}", style="red")
        self.query_one("#run-state", Static).update(state)
        total, done = model.bytes_total, model.bytes_done
        progress = self.query_one("#run-progress", ProgressBar)
        progress.update(total=max(total, 1), progress=min(done, total) if total else (1 if model.finished else 0))
        rate = model.throughput()
        eta = model.eta_seconds()
        figures = (f"{human_bytes(done)} of {human_bytes(total)} · {human_count(model.rows_done)} rows · "
                   f"{len([r for r in model.tables.values() if r.done])}/{len(model.tables)} tables")
        if model.schema_only:
            figures += f" (+{len(model.schema_only)} schema-only)"
        figures += f" · elapsed {human_seconds(model.elapsed())}"
        if rate:
            figures += f" · {human_bytes(rate)}/s"
        # The ETA is the copy's: once every row is in, it has nothing left to predict.
        if eta is not None and not model.finished and model.phase_status("data") != "done":
            figures += f" · ETA {human_seconds(eta)}"
        self.query_one("#run-figures", Static).update(figures)

    def _draw_indexes(self, model: RunModel) -> None:
        line = self.query_one("#run-indexes", Static)
        progress = model.index_progress
        line.display = bool(progress)
        if not progress:
            return
        # The database whose indexes are building now; otherwise the last one that reported.
        running = [] if model.finished else [progress[name] for name in model.phase_databases("indexes")
                                             if name in progress]
        event = running[0] if running else max(progress.values(), key=lambda e: e.at)
        line.update(index_progress_text(event, database=len(model.databases) > 1, running=bool(running)))

    def _draw_tables(self, model: RunModel) -> None:
        table = self.query_one("#run-tables", DataTable)
        for row in model.tables.values():
            key = table_key_text(row.key)
            cells = (
                f"{row.database}.{row.schema}.{row.name}" if len(model.databases) > 1 else f"{row.schema}.{row.name}",
                progress_text(row.fraction),
                f"{human_bytes(row.bytes_total if row.done else row.bytes_done)} / {human_bytes(row.bytes_total)}",
                human_count(row.rows_done),
                table_state(row),
            )
            previous = self._shown_rows.get(key)
            if previous is None:
                table.add_row(*cells, key=key)
            elif previous != cells:
                # Only the cells that changed: a full rebuild would reset scrolling and cost O(tables).
                for column, old, new in zip(("table", "progress", "bytes", "rows", "state"), previous, cells,
                                            strict=True):
                    if old != new:
                        table.update_cell(key, column, new)
            self._shown_rows[key] = cells
        for table_key in model.schema_only:
            key = table_key_text(table_key)
            if key in self._shown_rows:
                continue
            database, schema, name = table_key
            label = f"{database}.{schema}.{name}" if len(model.databases) > 1 else f"{schema}.{name}"
            schema_cells = (label, "–", "definition only", "–", "schema")
            table.add_row(*schema_cells, key=key)
            self._shown_rows[key] = schema_cells

    def _draw_log(self, model: RunModel) -> None:
        new = model.log_count - self._log_shown
        if new <= 0:
            return
        lines = list(model.log)[-new:] if new <= len(model.log) else list(model.log)
        self.query_one("#run-log", Log).write_lines(
            f"{'!' if level == 'error' else ('▲' if level == 'warning' else '·')} {text}" for level, text in lines
        )
        self._log_shown = model.log_count

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        model = self.model
        if action == "dashboard":
            return model is not None and model.state == "streaming"
        if action == "cancel_run":
            return model is not None and model.state == "running"
        return True

    def action_dashboard(self) -> None:
        model = self.model
        if model is not None and model.state == "streaming":
            self.pgtide.open_dashboard(model.plan)

    def action_cancel_run(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.pgtide.cancel_migration()

        self.app.push_screen(
            ConfirmModal("Cancel the migration?",
                         "The copy stops, and the publication, replication slot and subscription it created are "
                         "removed from both servers. Tables already copied stay on the target.",
                         yes="Cancel migration", no="Keep running"),
            answered,
        )

    def action_leave(self) -> None:
        self.pgtide.show_start()

    @on(Button.Pressed, "#dashboard")
    def _dashboard_pressed(self) -> None:
        self.action_dashboard()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel_run()

    @on(Button.Pressed, "#leave")
    def _leave_pressed(self) -> None:
        self.action_leave()
