"""Filters for a foreign source: per picked table all rows, schema only, or a row filter in the
source's own language (SQL for SQLite and MySQL/MariaDB, a JSON query for MongoDB), checked
by the source itself; and the layout of the whole migration (typed or jsonb).

A filter is judged by the source in a worker (``Services.foreign_check_filter``): the
source's message is what the user reads, and a refused filter blocks Next with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Input, RadioSet, Static

from ..core.infra.errors import InputError, PgtideError
from ..widgets.live_table import LiveTable
from ..widgets.toggles import Choice, TickBox
from .base import WizardStep
from .foreign_state import FILTER_EXAMPLES, FILTER_LANGUAGES
from .requests import RequestTracker, Ticket

if TYPE_CHECKING:
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.source import SourceTable
    from .foreign_state import ForeignChoices

LAYOUT_TEXT = {
    "typed": "typed: real columns, cast types, keys rebuilt",
    "jsonb": "jsonb: (id, data JSONB) per record",
}


class FilterJudged(Message):
    """The source's verdict on one table's row filter: ``problem`` is its refusal, "" when accepted."""

    def __init__(self, ticket: Ticket, table: str, where: str, problem: str, remedy: str) -> None:
        super().__init__()
        self.ticket = ticket
        self.table = table
        self.where = where
        self.problem = problem
        self.remedy = remedy


class FiltersJudged(Message):
    """Every filter of one request judged; ``then_next``: the request was Next's."""

    def __init__(self, ticket: Ticket, then_next: bool) -> None:
        super().__init__()
        self.ticket = ticket
        self.then_next = then_next


class ForeignFiltersScreen(WizardStep):
    STEP = "3 Filters"

    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+k", "check_filter", "Check filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.requests = RequestTracker()
        self._remedies: dict[str, str] = {}
        self._loading = False

    @property
    def choices(self) -> ForeignChoices:
        choices = self.wizard.foreign
        assert choices is not None
        return choices

    def compose(self) -> ComposeResult:
        choices = self.choices
        yield Header()
        with Horizontal(id="foreign-filters-body"):
            with Vertical(id="foreign-filters-tables"):
                yield Static("Tables", classes="section-title")
                yield LiveTable(id="foreign-filter-list", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="foreign-editor"):
                yield Static("", id="foreign-editor-title", classes="section-title", markup=False)
                yield Static("", id="foreign-editor-facts", markup=False)
                yield TickBox("Schema only (the definition, no rows)", id="foreign-schema-only", compact=True)
                yield Static(f"Row filter: {FILTER_LANGUAGES.get(choices.source.kind, 'the source language')}",
                             classes="field-title", markup=False)
                with Horizontal(classes="field-row"):
                    yield Input(placeholder=f"e.g. {FILTER_EXAMPLES.get(choices.source.kind, '')}",
                                id="foreign-row-filter", compact=True)
                    yield Button("Check", id="foreign-check", compact=True)
                yield Static("", id="foreign-filter-verdict", markup=False)
                yield Static("Layout of the whole migration", classes="field-title", markup=False)
                with RadioSet(id="foreign-layout"):
                    for layout in ("typed", "jsonb"):
                        yield Choice(LAYOUT_TEXT[layout], value=choices.layout == layout, id=f"layout-{layout}",
                                     disabled=layout not in choices.layouts)
                if "typed" not in choices.layouts:
                    yield Static("MongoDB documents have no columns to type: jsonb only.", classes="legend",
                                 markup=False)
                yield Static("Target database (created when missing)", classes="field-title", markup=False)
                yield Input(choices.target_database, id="foreign-target-db", compact=True)
        yield Static("", id="foreign-filters-problem", markup=False)
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Next: review", id="next", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#foreign-editor").border_title = "Table"
        table = self.query_one("#foreign-filter-list", DataTable)
        for label, key in (("Table", "table"), ("Mode", "mode"), ("Filter", "filter")):
            table.add_column(label, key=key)
        for source_table in self.choices.picked_tables:
            table.add_row(*self._cells(source_table.name), key=source_table.name)
        names = [t.name for t in self.choices.picked_tables]
        if names:
            self._show_table(names[0])
        self._show_problem()
        table.focus()

    # -- the table list ----------------------------------------------------------------------------

    def _cells(self, name: str) -> tuple[str | Text, ...]:
        choices = self.choices
        where = choices.filters.get(name, "")
        if name in choices.schema_only or not where:
            verdict: str | Text = ""
        elif choices.filter_problem(name) is not None:
            verdict = Text("✗ refused", style="bold red")
        elif name in choices.unchecked_filters():
            verdict = Text("? not checked", style="yellow")
        else:
            verdict = Text("✓ accepted", style="green")
        return (name, choices.mode(name), verdict)

    def _redraw_row(self, name: str) -> None:
        table = self.query_one("#foreign-filter-list", DataTable)
        for key, cell in zip(("table", "mode", "filter"), self._cells(name), strict=True):
            table.update_cell(name, key, cell, update_width=True)

    @on(DataTable.RowHighlighted, "#foreign-filter-list")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._show_table(str(event.row_key.value))

    def _show_table(self, name: str) -> None:
        choices = self.choices
        source_table = choices.table(name)
        if source_table is None:
            return
        self.current = name
        self._loading = True
        try:
            self.query_one("#foreign-editor-title", Static).update(name)
            columns = ", ".join(source_table.column_names[:12]) + (" …" if len(source_table.columns) > 12 else "")
            key = ", ".join(source_table.key) or "none"
            self.query_one("#foreign-editor-facts", Static).update(
                f"Columns: {columns or '(documents)'}\nKey: {key}")
            self.query_one("#foreign-schema-only", TickBox).value = name in choices.schema_only
            field = self.query_one("#foreign-row-filter", Input)
            field.value = choices.filters.get(name, "")
            field.disabled = name in choices.schema_only
            self.query_one("#foreign-check", Button).disabled = name in choices.schema_only
        finally:
            self._loading = False
        self._show_verdict()

    def _show_verdict(self) -> None:
        verdict = self.query_one("#foreign-filter-verdict", Static)
        name, choices = self.current, self.choices
        if name is None:
            verdict.update("")
            return
        where = choices.filters.get(name, "")
        if name in choices.schema_only:
            verdict.update(Text("No rows are copied, so no filter applies.", style="dim"))
        elif not where:
            verdict.update(Text("Every row is copied.", style="dim"))
        elif (problem := choices.filter_problem(name)) is not None:
            text = Text.assemble(("✗ ", "bold red"), (problem, "red"))
            remedy = self._remedies.get(name)
            if remedy:
                text.append(f"\nFix: {remedy}")
            verdict.update(text)
        elif name in choices.unchecked_filters():
            verdict.update(Text("? not checked yet: Check (Enter) asks the source; Next checks it too.",
                                style="yellow"))
        else:
            verdict.update(Text.assemble(("✓ ", "bold green"), "the source accepts this filter"))

    def _show_problem(self) -> None:
        reason = self.choices.blocked_reason()
        self.query_one("#foreign-filters-problem", Static).update(
            Text(reason, style="red") if reason else "")

    # -- editing --------------------------------------------------------------------------------

    @on(TickBox.Changed, "#foreign-schema-only")
    def _schema_only(self, event: TickBox.Changed) -> None:
        if self._loading or self.current is None:
            return
        if event.value:
            self.choices.schema_only.add(self.current)
        else:
            self.choices.schema_only.discard(self.current)
        self.query_one("#foreign-row-filter", Input).disabled = event.value
        self.query_one("#foreign-check", Button).disabled = event.value
        self._edited()

    @on(Input.Changed, "#foreign-row-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._loading or self.current is None:
            return
        self.choices.set_filter(self.current, event.value)
        self._edited()

    def _edited(self) -> None:
        if self.current is not None:
            self._redraw_row(self.current)
        self._show_verdict()
        self._show_problem()

    @on(Input.Submitted, "#foreign-row-filter")
    def _filter_submitted(self) -> None:
        self.action_check_filter()

    @on(Button.Pressed, "#foreign-check")
    def _check_pressed(self) -> None:
        self.action_check_filter()

    @on(RadioSet.Changed, "#foreign-layout")
    def _layout_changed(self, event: RadioSet.Changed) -> None:
        chosen = (event.pressed.id or "").removeprefix("layout-")
        if chosen in self.choices.layouts:
            self.choices.layout = chosen

    @on(Input.Changed, "#foreign-target-db")
    def _target_changed(self, event: Input.Changed) -> None:
        self.choices.target_database = event.value.strip()
        self._show_problem()

    # -- asking the source -------------------------------------------------------------------------

    def action_check_filter(self) -> None:
        name = self.current
        if name is None:
            return
        where = self.choices.filters.get(name)
        if not where or name in self.choices.schema_only:
            self._show_verdict()
            return
        self._ask(False, {name: where})

    def _ask(self, then_next: bool, filters: dict[str, str]) -> None:
        choices = self.choices
        pending = [(table, where) for name, where in filters.items() if (table := choices.table(name)) is not None]
        self.query_one("#foreign-filter-verdict", Static).update("Asking the source…")
        self._judge(self.requests.start("judge"), choices.source, pending, then_next)

    @work(thread=True, exit_on_error=False, exclusive=True, group="judge", description="Checking row filters")
    def _judge(self, ticket: Ticket, source: ForeignEndpoint, pending: list[tuple[SourceTable, str]],
               then_next: bool) -> None:
        for table, where in pending:
            try:
                self.services.foreign_check_filter(source, table, where)
            except InputError as exc:
                self.post_message(FilterJudged(ticket, table.name, where, exc.cause or exc.title, exc.remedy))
                continue
            except PgtideError as exc:
                # Not a verdict on the filter: Check asks again once the source answers.
                self.post_message(FilterJudged(ticket, table.name, where,
                                               f"{table.name}: could not ask the source ({exc.title}): {exc.cause}",
                                               exc.remedy))
                continue
            self.post_message(FilterJudged(ticket, table.name, where, "", ""))
        self.post_message(FiltersJudged(ticket, then_next))

    @on(FilterJudged)
    def _judged(self, message: FilterJudged) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.choices.checked[message.table] = (message.where, message.problem)
        self._remedies[message.table] = message.remedy
        self._redraw_row(message.table)
        if message.table == self.current:
            self._show_verdict()
        self._show_problem()

    @on(FiltersJudged)
    def _all_judged(self, message: FiltersJudged) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self._show_verdict()
        if message.then_next:
            self.action_next()

    # -- moving on ----------------------------------------------------------------------------------

    def action_next(self) -> None:
        choices = self.choices
        unchecked = choices.unchecked_filters()
        if unchecked:
            self._ask(True, unchecked)
            return
        reason = choices.blocked_reason()
        self._show_problem()
        if reason is not None:
            self.notify(reason, title="Not moving on", severity="warning", timeout=10)
            return
        self.pgtide.show_foreign_review()
