"""Run for a foreign source: the copy's per-table progress, the log, Cancel; then the dashboard.

The copy runs in the App's worker (``PgtideApp.start_foreign_migration``); this screen draws
``PgtideApp.foreign_run`` whenever the App says it changed. PostgreSQL's Run screen speaks of
phases, slots and streaming that a foreign copy does not have: this one is smaller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Log, ProgressBar, Static

from ..widgets.formatting import human_bytes, human_count, progress_text
from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal
from .base import PgtideScreen
from .foreign_state import ForeignRunModel, ForeignTableRow

if TYPE_CHECKING:
    from ..core.infra.errors import PgtideError
    from ..core.infra.events import Event

STATE_LINES = {
    "running": ("● copying", "cyan"),
    "cancelling": ("● cancelling: stopping the copy…", "yellow"),
    "copied": ("✔ copied: open the dashboard to verify and keep the target in sync", "green"),
    "failed": ("✖ failed: fix the cause and start again (copied tables are kept, a rerun resumes)", "red"),
    "cancelled": ("✔ cancelled: tables copied so far are kept; starting again resumes", "yellow"),
}


class ForeignRunUpdated(Message):
    """The App changed the foreign run's model: redraw. Bursts collapse into one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ForeignRunUpdated)


def row_state(row: ForeignTableRow) -> str:
    if row.schema_only:
        return "schema"
    if row.done:
        return "copied"
    return "copying" if row.rows_done or row.bytes_done else "waiting"


class ForeignRunScreen(PgtideScreen):
    STEP = "5 Run"

    BINDINGS = [
        Binding("d", "dashboard", "Open dashboard"),
        Binding("c", "cancel_run", "Cancel copy"),
        Binding("escape", "leave", "Start screen"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, tuple[object, ...]] = {}
        self._log_shown = 0

    @property
    def model(self) -> ForeignRunModel | None:
        return self.pgtide.foreign_run

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="foreign-run-body"):
            yield Static("", id="foreign-run-state", markup=False)
            yield ProgressBar(total=100, show_eta=False, id="foreign-run-progress")
            yield Static("", id="foreign-run-figures", markup=False)
            yield LiveTable(id="foreign-run-tables", cursor_type="row", zebra_stripes=True)
            yield Log(id="foreign-run-log", max_lines=2000)
        with Horizontal(classes="button-row"):
            yield Button("Start screen", id="leave")
            yield Button("Cancel copy", id="cancel", variant="error")
            yield Button("Open dashboard", id="dashboard", variant="primary", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#foreign-run-log").border_title = "Log"
        table = self.query_one("#foreign-run-tables", DataTable)
        for label, key, width in (("Table", "table", None), ("Progress", "progress", 19), ("Rows", "rows", 10),
                                  ("Copied", "bytes", 20), ("State", "state", 8)):
            table.add_column(label, key=key, width=width)
        self.redraw()

    @on(ForeignRunUpdated)
    def _updated(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        model = self.model
        if model is None:
            return
        label, style = STATE_LINES[model.state]
        state = Text.assemble((label, f"bold {style}"))
        if model.error is not None and model.state == "failed":
            state.append(f"\n{model.error.title}: {model.error.cause}", style="red")
        self.query_one("#foreign-run-state", Static).update(state)
        total, done = model.bytes_total, model.bytes_done
        copied = sum(1 for row in model.tables.values() if row.done)
        moving = sum(1 for row in model.tables.values() if not row.schema_only)
        self.query_one("#foreign-run-progress", ProgressBar).update(
            total=max(total, 1), progress=min(done, total) if total else (1 if model.finished else 0))
        phase = next((name for name, status in model.phases.items() if status == "running"), "")
        self.query_one("#foreign-run-figures", Static).update(
            f"{human_bytes(done)} of {human_bytes(total)} · {human_count(model.rows_done)} rows · "
            f"{copied}/{moving} tables" + (f" · {phase}" if phase and not model.finished else ""))
        self._draw_tables(model)
        self._draw_log(model)
        self.query_one("#dashboard", Button).disabled = model.state != "copied"
        cancel = self.query_one("#cancel", Button)
        cancel.disabled = model.state != "running"
        cancel.display = not model.finished
        self.refresh_bindings()

    def _draw_tables(self, model: ForeignRunModel) -> None:
        table = self.query_one("#foreign-run-tables", DataTable)
        for name, row in model.tables.items():
            cells: tuple[object, ...] = (
                name, "–" if row.schema_only else progress_text(row.fraction, 12),
                "–" if row.schema_only else human_count(row.rows_done),
                "definition only" if row.schema_only else
                f"{human_bytes(row.bytes_total if row.done else row.bytes_done)} / {human_bytes(row.bytes_total)}",
                row_state(row))
            previous = self._shown.get(name)
            if previous is None:
                table.add_row(*cells, key=name)
            elif previous != cells:
                for column, old, new in zip(("table", "progress", "rows", "bytes", "state"), previous, cells,
                                            strict=True):
                    if old != new:
                        table.update_cell(name, column, new)
            self._shown[name] = cells

    def _draw_log(self, model: ForeignRunModel) -> None:
        new = model.log_count - self._log_shown
        if new <= 0:
            return
        lines = list(model.log)[-new:]
        self.query_one("#foreign-run-log", Log).write_lines(
            f"{'!' if level == 'error' else ('▲' if level == 'warning' else '·')} {text}" for level, text in lines)
        self._log_shown = model.log_count

    # -- actions ----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        model = self.model
        if action == "dashboard":
            return model is not None and model.state == "copied"
        if action == "cancel_run":
            return model is not None and model.state == "running"
        return True

    def action_dashboard(self) -> None:
        model = self.model
        if model is not None and model.state == "copied":
            self.pgtide.open_foreign_dashboard(model.migration_id)

    def action_cancel_run(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.pgtide.cancel_foreign_migration()

        self.app.push_screen(ConfirmModal(
            "Cancel the copy?", "The copy stops after the batch in flight. Tables already copied stay on the "
            "target; starting the same migration again resumes table by table.",
            yes="Cancel copy", no="Keep copying"), answered)

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


class ForeignRunEvent(Message):
    """A core event of the running foreign copy, for the App's model."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # Progress of one table: only the newest matters when the UI falls behind.
        from ..core.infra.events import TableProgress

        return (isinstance(message, ForeignRunEvent) and isinstance(self.event, TableProgress)
                and isinstance(message.event, TableProgress) and message.event.table == self.event.table)


class ForeignRunEnded(Message):
    """The foreign copy ended: ``tables`` copied, or its error, or cancelled."""

    def __init__(self, tables: list[str], error: PgtideError | None, *, cancelled: bool = False) -> None:
        super().__init__()
        self.tables = tables
        self.error = error
        self.cancelled = cancelled
