"""Pick for a foreign source (SQLite, MySQL/MariaDB, MongoDB): the tables of its one database.

PostgreSQL's Pick lists databases, then tables; a foreign source is one database (an SQLite
file, a MySQL database, a MongoDB database), so this lists its tables only. The catalog is
the one Connect read (``WizardState.foreign``): picking touches no server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Header, Static

from ..widgets.formatting import human_bytes, human_count
from ..widgets.table_picker import PickerRow, TablePicker
from .base import WizardStep

if TYPE_CHECKING:
    from ..core.foreign.source import SourceTable
    from .foreign_state import ForeignChoices

NO_KEY = "⚠"
NO_KEY_LEGEND = ("Rows: ~ is the source's estimate, a plain figure an exact count.  "
                 f"{NO_KEY} no key: no primary key or unique NOT NULL key (or, for a document, no _id). "
                 "It is copied; a change stream cannot apply its updates and deletes by key, and a refresh "
                 "reloads it whole.")


def foreign_row(table: SourceTable) -> PickerRow:
    """A source table as the picker shows it: name, rows (exact or estimated), size, the no-key mark."""
    rows_text = human_count(table.rows, approximate=not table.rows_exact)
    warning = Text(NO_KEY, style="bold yellow") if not table.key and not table.document else Text("")
    return PickerRow(key=table.name, cells=(table.name, rows_text, human_bytes(table.size_bytes), warning),
                     search=table.name.lower())


class ForeignPickScreen(WizardStep):
    STEP = "2 Pick"

    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+f", "focus_filter", "Filter"),
    ]

    @property
    def choices(self) -> ForeignChoices:
        choices = self.wizard.foreign
        assert choices is not None, "the foreign Pick opens only once Connect found both sides"
        return choices

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="foreign-pick-body"):
            yield Static("", id="foreign-pick-title", classes="section-title", markup=False)
            yield TablePicker(("Table", "Rows", "Size", NO_KEY), placeholder="Filter: part of a table name",
                              id="foreign-tables")
            yield Static(NO_KEY_LEGEND, classes="legend", markup=False)
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Next: filters", id="next", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        choices = self.choices
        noun = "collections" if choices.source.kind == "mongodb" else "tables"
        self.query_one("#foreign-pick-title", Static).update(
            f"{choices.kind_name} {choices.source.redacted()}: {len(choices.tables)} {noun}")
        picker = self.query_one("#foreign-tables", TablePicker)
        picker.set_rows([foreign_row(t) for t in choices.tables], selected=choices.picked)
        picker.table.focus()

    @on(TablePicker.SelectionChanged)
    def _selection_changed(self, event: TablePicker.SelectionChanged) -> None:
        self.choices.picked = set(event.selected)

    def action_focus_filter(self) -> None:
        self.query_one("#foreign-tables", TablePicker).filter_input.focus()

    def action_next(self) -> None:
        if not self.choices.picked:
            self.notify("Pick at least one table (space ticks the highlighted one).", title="Not moving on",
                        severity="warning", timeout=8)
            return
        self.pgtide.show_foreign_filters()
