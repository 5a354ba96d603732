"""Filters: per table copy / schema-only / exclude, a row filter and a time filter, each checked by the server.

Problems are shown next to the table that causes them: a table without a replica identity,
a filter the server (or a publication) rejects, foreign keys that would break because a
linked table is left out or filtered differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    Button,
    Footer,
    Header,
    Input,
    RadioSet,
    Select,
    Static,
)

from ..core.infra.errors import InputError, PgtideError
from ..core.model.selection import (
    TimeFilter,
    TimeWindow,
    check_predicate_syntax,
    format_qualified_name,
    quote_ident,
)
from ..widgets.formatting import human_bytes, human_count
from ..widgets.table_picker import PickerRow, TablePicker
from ..widgets.toggles import Choice
from .base import WizardStep
from .messages import FilterChecked
from .requests import RequestTracker, Ticket
from .state import DEFAULT_TIME_WINDOW, TableKey, TimeFilterChoice, table_key_text

if TYPE_CHECKING:
    from ..core.catalog.discovery import ColumnInfo, TableInfo
    from ..core.catalog.filtercheck import FilterCheck
    from ..core.infra.endpoint import Endpoint

Mode = Literal["full", "schema_only", "excluded"]
FilterKind = Literal["row", "time"]
MODE_LABELS: dict[str, str] = {"full": "copy", "schema_only": "schema only", "excluded": "excluded"}
MODE_BUTTONS: tuple[tuple[str, Mode], ...] = (("mode-full", "full"), ("mode-schema", "schema_only"),
                                               ("mode-excluded", "excluded"))


def check_purpose(key: TableKey) -> str:
    """One purpose per table: a table's newest check supersedes its older ones, not other tables'."""
    return "filter " + table_key_text(key)


@dataclass(frozen=True)
class FilterCheckRequest:
    """One server check of one table's filter, fixed when it was asked for."""

    ticket: Ticket
    source: Endpoint
    key: TableKey
    info: TableInfo
    which: FilterKind
    predicate: str | None
    time_filter: TimeFilter | None


def filterable_time_columns(info: TableInfo) -> tuple[ColumnInfo, ...]:
    """Time columns a publication can filter on: those of the replica identity (any, with FULL).

    A publication that carries UPDATE and DELETE accepts a row filter only over the columns
    that identify a row; a time filter on any other column is refused, every time.
    """
    if info.replica_identity == "f":
        return info.time_columns
    return tuple(c for c in info.time_columns if c.name in info.identity_columns)


def problem_text(error: PgtideError, *, warning: bool = False, title: str | None = None) -> Text:
    text = Text.assemble(("▲ " if warning else "✖ ", "bold yellow" if warning else "bold red"))
    text.append((title or error.title) + ": ", style="bold")
    text.append(error.cause)
    if error.remedy:
        text.append("\n  Fix: ", style="bold")
        text.append(error.remedy)
    return text


def check_ok_text(check: FilterCheck, info: TableInfo) -> Text:
    text = Text.assemble(("✔ ", "bold green"))
    text.append("accepted by the server")
    if check.estimated_rows is not None:
        total = human_count(info.row_estimate, approximate=True) if info.row_estimate is not None else "?"
        text.append(f": keeps {human_count(check.estimated_rows, approximate=True)} of {total} rows")
    if check.cutoff:
        text.append(f"\n  cut at {check.cutoff} (fixed once, used by the copy and the publication)")
    if check.filter_columns:
        text.append("\n  reads " + ", ".join(quote_ident(c) for c in check.filter_columns), style="dim")
    return text


def identity_text(info: TableInfo) -> str:
    if info.primary_key:
        return "key " + ", ".join(quote_ident(c) for c in info.primary_key)
    if info.replica_identity == "f":
        return "replica identity FULL"
    if info.identity_columns:
        return "replica identity " + ", ".join(quote_ident(c) for c in info.identity_columns)
    return "no key"


class FiltersScreen(WizardStep):
    STEP = "3 Filters"

    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+f", "focus_filter", "Find table"),
        Binding("ctrl+r", "focus_row_filter", "Row filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, TableKey] = {}
        self.current: TableKey | None = None
        self.results: dict[TableKey, dict[str, Text]] = {}
        #: Tables whose filter the server refused (marked in the list until it is changed).
        self.refused: set[TableKey] = set()
        self._loading = False
        #: Per table, the newest server check: a slower, older one must not give its verdict.
        self.requests = RequestTracker()
        #: Tables whose filter the server is checking now (Next waits for the verdict).
        self.checking: set[TableKey] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filters-body"):
            with Vertical(id="filters-tables"):
                yield Static("Tables of the selected databases", classes="section-title")
                yield TablePicker(("Table", "Mode", "Filter", "⚠"), checkable=False, noun="tables", id="filter-tables")
                yield Static("⚠ no primary key or replica identity · ✖ filter refused", classes="legend",
                             markup=False)
            with VerticalScroll(id="editor"):
                yield Static("", id="editor-title", markup=False)
                yield Static("", id="editor-facts", markup=False)
                with RadioSet(id="mode"):
                    yield Choice("Copy rows", id="mode-full", value=True)
                    yield Choice("Schema only", id="mode-schema")
                    yield Choice("Exclude", id="mode-excluded")
                yield Static("Row filter: a SQL condition on this table's columns", classes="field-title")
                with Horizontal(classes="field-row"):
                    yield Input(placeholder="e.g. region = 'eu'   (empty: every row)", id="row-filter")
                    yield Button("Check", id="check-row")
                yield Static("", id="row-result", markup=False)
                yield Static("Time filter: only rows of the last …", classes="field-title")
                with Horizontal(classes="field-row"):
                    yield Select[str]([], prompt="no time filter", id="time-column")
                    yield Input(DEFAULT_TIME_WINDOW, id="time-window")
                    yield Button("Check", id="check-time")
                yield Static("", id="time-result", markup=False)
                yield Static("", id="table-problems", markup=False)
        yield Static("", id="selection-problem", markup=False)
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Next: review", id="next", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self._fill_tables()
        self._show_selection_problem()

    # -- the table list ---------------------------------------------------------------------------

    def _row(self, key: TableKey) -> PickerRow:
        info = self.wizard.table_info(key)
        mode = self.wizard.mode_of(key)
        warning = Text("")
        if info is not None and mode == "full" and not info.has_usable_identity:
            warning = Text("⚠", style="bold yellow")
        label = format_qualified_name(key[1:])
        if len(self.wizard.databases) > 1:
            label = f"{quote_ident(key[0])}.{label}"
        mode_text = Text(MODE_LABELS[mode], style="dim" if mode == "excluded" else "")
        filter_text = Text(self.wizard.describe_filter(key))
        if key in self.refused and filter_text:
            filter_text = Text.assemble(("✖ ", "bold red"), filter_text)
        return PickerRow(table_key_text(key), (label, mode_text, filter_text, warning),
                         search=f"{key[0]}.{key[1]}.{key[2]}".lower(), group=key[1])

    def _fill_tables(self) -> None:
        keys: list[TableKey] = []
        for database in self.wizard.databases:
            catalog = self.wizard.catalogs.get(database)
            if catalog is not None:
                keys.extend((database, t.schema, t.name) for t in catalog.tables)
        self.keys = {table_key_text(key): key for key in keys}
        picker = self.query_one("#filter-tables", TablePicker)
        # Selected tables first: they are the ones filters are for.
        ordered = sorted(keys, key=lambda k: self.wizard.mode_of(k) == "excluded")
        picker.set_rows(self._row(key) for key in ordered)
        if ordered:
            self.show_table(ordered[0])
        picker.table.focus()

    def _refresh_row(self, key: TableKey) -> None:
        self.query_one("#filter-tables", TablePicker).update_row(self._row(key))

    @on(TablePicker.Highlighted, "#filter-tables")
    def _highlighted(self, event: TablePicker.Highlighted) -> None:
        if event.key is not None and event.key in self.keys:
            self.show_table(self.keys[event.key])

    # -- the editor ------------------------------------------------------------------------------

    def show_table(self, key: TableKey) -> None:
        if key == self.current:
            return
        self.current = key
        self.query_one("#filter-tables", TablePicker).move_to(table_key_text(key))
        info = self.wizard.table_info(key)
        if info is None:
            return
        self._loading = True
        try:
            self.query_one("#editor-title", Static).update(Text(table_key_text(key), style="bold"))
            rows = human_count(info.row_estimate, approximate=True) if info.row_estimate is not None else "? rows"
            facts = f"{human_bytes(info.total_bytes)} · {rows} rows · {identity_text(info)}"
            self.query_one("#editor-facts", Static).update(facts)
            mode = self.wizard.mode_of(key)
            button_id = next(button for button, value in MODE_BUTTONS if value == mode)
            self.query_one(f"#{button_id}", Choice).value = True
            self.query_one("#row-filter", Input).value = self.wizard.row_filters.get(key, "")
            column_select = self.query_one("#time-column", Select)
            columns = [(f"{c.name}  ({c.type})", c.name) for c in filterable_time_columns(info)]
            column_select.set_options(columns)
            choice = self.wizard.time_filters.get(key)
            column_select.value = choice.column if choice else Select.NULL
            self.query_one("#time-window", Input).value = choice.window if choice else DEFAULT_TIME_WINDOW
            self._show_results(key)
            self._enable_filter_fields(key)
            self._show_table_problems()
        finally:
            self.call_after_refresh(self._loaded)

    def _loaded(self) -> None:
        self._loading = False

    def _show_results(self, key: TableKey) -> None:
        info = self.wizard.table_info(key)
        results = self.results.get(key, {})
        default_time = Text("")
        if info is not None and not filterable_time_columns(info):
            if info.time_columns:
                names = ", ".join(quote_ident(c.name) for c in info.time_columns)
                default_time = Text(f"{names} not in the table's key or replica identity: a publication can filter "
                                    "on those only (REPLICA IDENTITY FULL on the source allows any column)",
                                    style="dim")
            else:
                default_time = Text("this table has no timestamp or date column", style="dim")
        self.query_one("#row-result", Static).update(results.get("row", Text("")))
        self.query_one("#time-result", Static).update(results.get("time", default_time))

    def _enable_filter_fields(self, key: TableKey) -> None:
        """Filters apply to copied rows only: for a schema-only or excluded table their fields are off."""
        info = self.wizard.table_info(key)
        copies = self.wizard.mode_of(key) == "full"
        has_columns = info is not None and bool(filterable_time_columns(info))
        for selector in ("#row-filter", "#check-row"):
            self.query_one(selector).disabled = not copies
        for selector in ("#time-column", "#time-window", "#check-time"):
            self.query_one(selector).disabled = not (copies and has_columns)
        if not copies:
            why = "schema only: no rows are copied" if self.wizard.mode_of(key) == "schema_only" else \
                "excluded: nothing of it is copied"
            self.query_one("#row-result", Static).update(Text(f"no filter: this table is {why}", style="dim"))

    def _show_table_problems(self) -> None:
        key = self.current
        info = self.wizard.table_info(key) if key else None
        text = Text()
        if key is not None and info is not None and self.wizard.mode_of(key) == "full" and not info.has_usable_identity:
            ident = format_qualified_name(info.qualified)
            text = problem_text(InputError(
                "this table has no primary key or replica identity: once it is published, UPDATE and DELETE on "
                "it fail on the source",
                f"Make it schema-only or exclude it, or run on the source: ALTER TABLE {ident} REPLICA IDENTITY FULL "
                "(or add a primary key).",
                title="No replica identity",
            ), warning=True)
        self.query_one("#table-problems", Static).update(text)

    def _show_selection_problem(self) -> None:
        from ..core.catalog.filtercheck import selection_problem

        lines = Text()
        for database in self.wizard.databases:
            catalog = self.wizard.catalogs.get(database)
            if catalog is None or not catalog.foreign_keys:
                continue
            problem = selection_problem(catalog, database, self.wizard.chosen_tables(database))
            if problem is not None:
                if lines:
                    lines.append("\n")
                lines.append_text(problem_text(problem))
        self.query_one("#selection-problem", Static).update(lines)

    def _changed(self, key: TableKey) -> None:
        self.refused.discard(key)  # a new choice: the old verdict no longer applies
        self._refresh_row(key)
        self._show_table_problems()
        self._show_selection_problem()

    # -- mode ------------------------------------------------------------------------------------

    @on(RadioSet.Changed, "#mode")
    def _mode_changed(self, event: RadioSet.Changed) -> None:
        if self._loading or self.current is None or event.pressed.id is None:
            return
        mode = dict(MODE_BUTTONS)[event.pressed.id]
        key = self.current
        self.wizard.set_mode(key, mode)
        if mode != "full":
            self._drop_check(key)
        self._changed(key)
        self._enable_filter_fields(key)
        if mode == "full":
            self._show_results(key)

    # -- row filter --------------------------------------------------------------------------------

    def _result(self, key: TableKey, which: str, text: Text) -> None:
        self.results.setdefault(key, {})[which] = text
        if key == self.current:
            self.query_one(f"#{which}-result", Static).update(text)

    @on(Input.Submitted, "#row-filter")
    @on(Button.Pressed, "#check-row")
    def apply_row_filter(self) -> None:
        key = self.current
        if key is None:
            return
        # Whatever follows, the result area speaks of this attempt, not of a check still running.
        self._drop_check(key)
        predicate = self.query_one("#row-filter", Input).value.strip()
        if not predicate:
            self.wizard.row_filters.pop(key, None)
            self._result(key, "row", Text("no row filter: every row is copied", style="dim"))
            self._changed(key)
            return
        try:
            check_predicate_syntax(predicate, what="row filter")
        except InputError as exc:
            self._result(key, "row", problem_text(exc))
            return
        self.wizard.row_filters[key] = predicate
        if self.wizard.time_filters.pop(key, None) is not None:
            self._clear_time_fields()
            self._result(key, "time", Text("time filter removed: a table takes one filter", style="dim"))
        if self.wizard.mode_of(key) != "full":
            self.wizard.set_mode(key, "full")
            self.query_one("#mode-full", Choice).value = True
        self._result(key, "row", Text("checking with the server…", style="dim"))
        self._changed(key)
        self._start_check(key, "row", predicate, None)

    def _clear_time_fields(self) -> None:
        self._loading = True
        self.query_one("#time-column", Select).value = Select.NULL
        self.call_after_refresh(self._loaded)

    # -- time filter -------------------------------------------------------------------------------

    @on(Select.Changed, "#time-column")
    def _time_column_changed(self, event: Select.Changed) -> None:
        if self._loading or self.current is None:
            return
        if event.value is Select.NULL:
            key = self.current
            self._drop_check(key)
            if self.wizard.time_filters.pop(key, None) is not None:
                self._result(key, "time", Text("no time filter", style="dim"))
                self._changed(key)
            return
        self.apply_time_filter()

    @on(Input.Submitted, "#time-window")
    @on(Button.Pressed, "#check-time")
    def apply_time_filter(self) -> None:
        key = self.current
        if key is None:
            return
        self._drop_check(key)
        column = self.query_one("#time-column", Select).value
        if not isinstance(column, str):
            self._result(key, "time", Text("pick a timestamp or date column first", style="yellow"))
            return
        window_text = self.query_one("#time-window", Input).value.strip() or DEFAULT_TIME_WINDOW
        try:
            window = TimeWindow.parse(window_text)
        except InputError as exc:
            self._result(key, "time", problem_text(exc))
            return
        self.wizard.time_filters[key] = TimeFilterChoice(column, str(window))
        if self.wizard.row_filters.pop(key, None) is not None:
            self.query_one("#row-filter", Input).value = ""
            self._result(key, "row", Text("row filter removed: a table takes one filter", style="dim"))
        if self.wizard.mode_of(key) != "full":
            self.wizard.set_mode(key, "full")
            self.query_one("#mode-full", Choice).value = True
        self._result(key, "time", Text("checking with the server…", style="dim"))
        self._changed(key)
        self._start_check(key, "time", None, TimeFilter(column, window))

    # -- the server check ----------------------------------------------------------------------------

    def _drop_check(self, key: TableKey) -> None:
        """Whatever check of ``key`` is still running no longer counts."""
        self.requests.supersede(check_purpose(key))
        self.checking.discard(key)

    def _start_check(self, key: TableKey, which: FilterKind, predicate: str | None,
                     time_filter: TimeFilter | None) -> None:
        info = self.wizard.table_info(key)
        source = self.wizard.source
        if info is not None and source is not None:
            ticket = self.requests.start(check_purpose(key))
            self.checking.add(key)
            self._check(FilterCheckRequest(ticket, source, key, info, which, predicate, time_filter))

    @work(thread=True, exit_on_error=False, group="filter-check", description="Checking a filter with the server")
    def _check(self, request: FilterCheckRequest) -> None:
        key = request.key
        try:
            check = self.services.check_filter(request.source, key[0], request.info, predicate=request.predicate,
                                               time_filter=request.time_filter)
        except PgtideError as exc:
            self.post_message(FilterChecked(request.ticket, key, request.which, None, exc))
            return
        self.post_message(FilterChecked(request.ticket, key, request.which, check, None))

    @on(FilterChecked)
    def _checked(self, message: FilterChecked) -> None:
        if not self.requests.is_current(message.ticket):
            return
        key = message.key
        which = message.which
        info = self.wizard.table_info(key)
        self.checking.discard(key)
        if message.error is not None:
            self.refused.add(key)
            # Core's title speaks of row filters: a time filter is one underneath, not to the user.
            title = "Invalid time filter" if which == "time" and message.error.title == "Invalid row filter" else None
            self._result(key, which, problem_text(message.error, title=title))
        elif message.check is not None and info is not None:
            self.refused.discard(key)
            self._result(key, which, check_ok_text(message.check, info))
        self._refresh_row(key)

    # -- navigation ---------------------------------------------------------------------------------

    def action_focus_filter(self) -> None:
        self.query_one("#filter-tables", TablePicker).filter_input.focus()

    def action_focus_row_filter(self) -> None:
        self.query_one("#row-filter", Input).focus()

    def next_blocked_reason(self) -> str | None:
        """Why Next cannot go on now, naming the table; None when it can."""
        if not self.wizard.selected_keys():
            return "Every table is excluded: copy at least one."
        key = self.current
        if key is not None and self.wizard.mode_of(key) == "full":
            typed = self.query_one("#row-filter", Input).value.strip()
            if typed != self.wizard.row_filters.get(key, ""):
                return (f"{table_key_text(key)}: the row filter typed is not applied yet. Press Enter in it to have "
                        "the server check it, or clear it.")
        if self.checking:
            names = ", ".join(sorted(table_key_text(k) for k in self.checking))
            return f"Still checking the filter of {names} with the server: Next waits for the verdict."
        refused = sorted(k for k in self.refused if self.wizard.mode_of(k) == "full" and self.wizard.describe_filter(k))
        if refused:
            first = table_key_text(refused[0])
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            return (f"The server refused the filter of {first}{more}: fix it, clear it, or make the table "
                    "schema-only. Each refused filter says why next to it.")
        return None

    def action_next(self) -> None:
        reason = self.next_blocked_reason()
        if reason is not None:
            self.notify(reason, title="Not moving on", severity="warning", timeout=10)
            if self.refused and self.current not in self.refused:
                first = sorted(self.refused)[0]
                self.show_table(first)
            return
        self.pgtide.show_review()

