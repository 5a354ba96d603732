"""Pick: the databases to migrate, then per database the tables (filter first: 10,000 tables stay quick)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Header, SelectionList, Static
from textual.widgets.selection_list import Selection as ListOption

from ..core.model.selection import format_qualified_name
from ..widgets.formatting import human_bytes, human_count
from ..widgets.table_picker import PickerRow, TablePicker
from ..widgets.toggles import TickList
from .base import WizardStep
from .messages import CatalogLoaded, DatabasesListed

if TYPE_CHECKING:
    from ..core.catalog.discovery import DatabaseCatalog, TableInfo
    from ..core.infra.endpoint import Endpoint

IDENTITY_WARNING = "⚠"


def table_row(info: TableInfo) -> PickerRow:
    """A table as the pickers show it: schema, name, size, rows, a warning when UPDATE/DELETE cannot replicate."""
    warning = Text(IDENTITY_WARNING, style="bold yellow") if not info.has_usable_identity else Text("")
    rows = human_count(info.row_estimate, approximate=True) if info.row_estimate is not None else "not analyzed"
    return PickerRow(
        key=format_qualified_name(info.qualified),
        cells=(info.schema, info.name, human_bytes(info.total_bytes), rows, warning),
        search=f"{info.schema}.{info.name}".lower(),
        group=info.schema,
    )


def fk_warning(catalog: DatabaseCatalog, chosen: set[tuple[str, str]]) -> str:
    """Selected tables whose foreign keys point at tables left out (their constraints would break)."""
    broken = [
        (fk.table, fk.referenced_table)
        for fk in catalog.foreign_keys
        if fk.table in chosen and fk.referenced_table not in chosen
    ]
    if not broken:
        return ""
    child, parent = broken[0]
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    return (f"⚠ {format_qualified_name(child)} references {format_qualified_name(parent)}, which is not selected"
            f"{more}: select it too, or its foreign key cannot be created on the target.")


class PickScreen(WizardStep):
    STEP = "2 Pick"

    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+f", "focus_filter", "Filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self._loading: set[str] = set()
        self._skipped_note = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pick-body"):
            with Vertical(id="databases-panel"):
                yield Static("Databases", classes="section-title")
                yield TickList(id="databases")
                yield Static("Loading databases…", id="databases-note", markup=False)
            with Vertical(id="tables-panel"):
                yield Static("Tables", id="tables-title", classes="section-title")
                yield TablePicker(("Schema", "Table", "Size", "Rows", IDENTITY_WARNING), id="tables")
                yield Static(f"{IDENTITY_WARNING} no primary key or replica identity (UPDATE/DELETE cannot replicate)",
                             classes="legend", markup=False)
                yield Static("", id="pick-problems", markup=False)
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Next: filters", id="next", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#databases-panel").border_title = "Databases"
        assert self.wizard.source is not None
        self._list_databases(self.wizard.source)

    # -- databases -----------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, exclusive=True, group="databases", description="Listing databases")
    def _list_databases(self, source: Endpoint) -> None:
        self.post_message(DatabasesListed(source, self.services.list_databases(source)))

    @on(DatabasesListed)
    def _databases_listed(self, message: DatabasesListed) -> None:
        # The wizard's source may have been replaced meanwhile (another profile, a new
        # migration): a listing of the old server must not become the new one's.
        if message.source != self.wizard.source:
            return
        server = message.server
        if self.wizard.server is None:
            chosen = self.wizard.initial_databases(server)
        else:  # back here after a step further: keep what was chosen
            chosen = [name for name in self.wizard.databases if server.database(name)]
        self.wizard.server = server
        self.wizard.databases = chosen
        listing = self.query_one("#databases", SelectionList)
        listing.clear_options()
        listing.add_options(
            ListOption(Text.assemble((db.name, "bold"), "  ", (human_bytes(db.size_bytes), "dim")), db.name,
                       db.name in chosen)
            for db in server.databases
        )
        self._skipped_note = f"Skipped: {', '.join(s.name for s in server.skipped)}. " if server.skipped else ""
        self._show_database_count()
        for name in chosen:
            self._load_catalog(name)
        first = chosen[0] if chosen else (server.databases[0].name if server.databases else None)
        if first is not None:
            self.show_database(first)
        listing.focus()

    @on(SelectionList.SelectedChanged, "#databases")
    def _databases_changed(self, event: SelectionList.SelectedChanged[str]) -> None:
        selected = list(event.selection_list.selected)
        order = [db.name for db in self.wizard.server.databases] if self.wizard.server else selected
        self.wizard.databases = [name for name in order if name in selected]
        for name in self.wizard.databases:
            self._load_catalog(name)
        self._show_database_count()
        if self.current is not None:
            self._show_title(self.current)

    def _show_database_count(self) -> None:
        server = self.wizard.server
        total = len(server.databases) if server is not None else 0
        self.query_one("#databases-note", Static).update(
            f"{len(self.wizard.databases)} of {total} selected · Space toggles. {self._skipped_note}")

    def _show_title(self, database: str) -> None:
        self.query_one("#tables-title", Static).update(
            f"Tables in {database}" + ("" if database in self.wizard.databases else " (database not selected)"))

    @on(SelectionList.SelectionHighlighted, "#databases")
    def _database_highlighted(self, event: SelectionList.SelectionHighlighted[str]) -> None:
        self.show_database(event.selection.value)

    def _load_catalog(self, database: str) -> None:
        if database in self.wizard.catalogs or database in self._loading:
            return
        self._loading.add(database)
        assert self.wizard.source is not None
        self._discover(self.wizard.source, database)

    @work(thread=True, exit_on_error=False, group="catalog", description="Reading a database's tables")
    def _discover(self, source: Endpoint, database: str) -> None:
        self.post_message(CatalogLoaded(source, database, self.services.discover_database(source, database)))

    @on(CatalogLoaded)
    def _catalog_loaded(self, message: CatalogLoaded) -> None:
        self._loading.discard(message.database)
        if message.source != self.wizard.source:
            return
        self.wizard.adopt_catalog(message.database, message.catalog)
        self.pgtide.keep_long_lived()
        if message.database == self.current:
            self.show_database(message.database)

    # -- tables ------------------------------------------------------------------------------------

    def show_database(self, database: str) -> None:
        self.current = database
        picker = self.query_one("#tables", TablePicker)
        title = self.query_one("#tables-title", Static)
        catalog = self.wizard.catalogs.get(database)
        if catalog is None:
            title.update(f"Tables in {database}: reading…")
            picker.set_rows([])
            self._load_catalog(database)
            return
        chosen = self.wizard.selected.get(database, set())
        with self.app.batch_update():
            picker.set_rows((table_row(info) for info in catalog.tables),
                            (format_qualified_name(q) for q in chosen))
            self._show_title(database)
            self._show_problems(database)

    @on(TablePicker.SelectionChanged, "#tables")
    def _tables_changed(self, event: TablePicker.SelectionChanged) -> None:
        database = self.current
        if database is None or database not in self.wizard.catalogs:
            return
        catalog = self.wizard.catalogs[database]
        by_key = {format_qualified_name(t.qualified): t.qualified for t in catalog.tables}
        self.wizard.selected[database] = {by_key[key] for key in event.selected if key in by_key}
        self._show_problems(database)

    def _show_problems(self, database: str) -> None:
        catalog = self.wizard.catalogs.get(database)
        text = ""
        if catalog is not None:
            chosen = self.wizard.selected.get(database, set())
            no_identity = [t for t in catalog.tables if t.qualified in chosen and not t.has_usable_identity
                           and (database, t.schema, t.name) not in self.wizard.schema_only]
            lines = []
            if no_identity:
                names = ", ".join(format_qualified_name(t.qualified) for t in no_identity[:3])
                lines.append(f"{IDENTITY_WARNING} no primary key or replica identity: {names}"
                             + (" …" if len(no_identity) > 3 else "")
                             + ". UPDATE/DELETE on them fail once published: make them schema-only in the "
                               "next step, or add a key / REPLICA IDENTITY FULL on the source.")
            warning = fk_warning(catalog, chosen)
            if warning:
                lines.append(warning)
            text = "\n".join(lines)
        self.query_one("#pick-problems", Static).update(text)

    # -- navigation --------------------------------------------------------------------------------

    def action_focus_filter(self) -> None:
        self.query_one("#tables", TablePicker).filter_input.focus()

    def action_next(self) -> None:
        if not self.wizard.databases:
            self.notify("Select at least one database (space in the list on the left).", severity="warning")
            return
        missing = [db for db in self.wizard.databases if db not in self.wizard.catalogs]
        if missing:
            self.notify(f"Still reading the tables of {', '.join(missing)}…", severity="warning")
            return
        if not self.wizard.selected_keys():
            self.notify("Select at least one table.", severity="warning")
            return
        self.pgtide.show_filters()

