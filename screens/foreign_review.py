"""Review for a foreign source: validate's checks (as for PostgreSQL, with the source's
consistency and change capture), the estimate from the source's catalog, the plan in words;
Start once no check is an error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Static

from ..core.infra.errors import PgtideError
from ..core.infra.events import CheckReported, Event
from ..widgets.check_list import CheckList, WrapStatic
from ..widgets.formatting import human_bytes, human_count
from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal
from ..widgets.toggles import TickBox
from .base import PgtideScreen
from .messages import CheckArrived, ValidationFailed
from .requests import RequestTracker, Ticket

if TYPE_CHECKING:
    from ..core.engine.validate import Report
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.plan import ForeignPlan
    from ..core.infra.endpoint import Endpoint
    from .foreign_state import ForeignChoices


class ForeignValidated(Message):
    def __init__(self, ticket: Ticket, plan: ForeignPlan, report: Report) -> None:
        super().__init__()
        self.ticket = ticket
        self.plan = plan
        self.report = report


def foreign_plan_in_words(plan: ForeignPlan, choices: ForeignChoices) -> Text:
    text = Text()
    text.append("From  ", style="bold")
    text.append(f"{plan.source.redacted()} ({choices.kind_name})")
    text.append("\nTo    ", style="bold")
    text.append(f"{plan.target.redacted()}, schema {plan.target_schema}")
    picked = choices.picked_tables
    text.append(f"\n\n{len(picked)} of {len(choices.tables)} table(s), {plan.layout} layout:\n")
    if plan.layout == "typed":
        text.append("  • tables created with cast types; rows streamed in key order with COPY\n"
                    "  • primary keys, indexes and foreign keys built after the data\n")
    else:
        text.append("  • one table per source table: id, data JSONB, _source_type, _migrated_at\n"
                    "  • a GIN index on data and a btree index on _migrated_at\n")
    text.append(f"  • {plan.jobs} tables copied in parallel; a rerun resumes table by table\n")
    for name, where in list(plan.filters.items())[:20]:
        text.append(f"  {name}: only rows where {where}\n")
    for name in plan.schema_only[:10]:
        text.append(f"  {name}: definition only, no rows\n")
    if plan.drop_existing:
        text.append("  Existing target tables of the same names are dropped and created again.\n", style="yellow")
    text.append("Kept in sync afterwards from the dashboard (binlog / change stream, or a refresh).", style="dim")
    return text


class ForeignReviewScreen(PgtideScreen):
    STEP = "4 Review"

    BINDINGS = [
        Binding("g", "start", "Go: start"),
        Binding("r", "revalidate", "Check again"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.plan: ForeignPlan | None = None
        self.report: Report | None = None
        self._checks: list[tuple[str, str, str, str, str | None]] = []
        self.requests = RequestTracker()

    @property
    def choices(self) -> ForeignChoices:
        choices = self.wizard.foreign
        assert choices is not None
        return choices

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="foreign-review-body"):
            with Vertical(id="foreign-review-checks"):
                yield Static("Checks", classes="section-title")
                yield Static("Checking…", id="foreign-review-status", markup=False)
                yield CheckList(id="foreign-checks")
            with VerticalScroll(id="foreign-review-right"):
                yield Static("Estimate", classes="section-title")
                yield LiveTable(id="foreign-estimate", cursor_type="row", zebra_stripes=True)
                yield Static("", id="foreign-estimate-total", markup=False)
                yield Static("Plan", classes="section-title")
                yield WrapStatic("", id="foreign-plan-words", markup=False)
        with Horizontal(id="foreign-review-options"):
            yield TickBox("Replace target tables that already exist (drops them; asks first)",
                          id="foreign-drop-existing", value=self.choices.drop_existing, compact=True)
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Check again", id="again")
            yield Button("Start copy", id="start", variant="success", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#foreign-estimate", DataTable)
        for label, key in (("Table", "table"), ("Mode", "mode"), ("Rows", "rows"), ("Size", "size")):
            table.add_column(label, key=key)
        self._show_estimate()
        self.action_revalidate()

    def _show_estimate(self) -> None:
        table = self.query_one("#foreign-estimate", DataTable)
        table.clear()
        rows, total_rows, total_bytes = self.choices.estimate()
        for name, mode, count, size, exact in rows:
            table.add_row(Text(name), mode, human_count(count, approximate=not exact), human_bytes(size))
        filtered = any(mode == "filtered" for _, mode, *_ in rows)
        self.query_one("#foreign-estimate-total", Static).update(
            f"Total {human_count(total_rows, approximate=True)} rows, {human_bytes(total_bytes)} in "
            f"{len(rows)} table(s) (source catalog{'; filtered tables counted whole' if filtered else ''})")

    # -- validating ------------------------------------------------------------------------------

    def action_revalidate(self) -> None:
        ticket = self.requests.start("validate")
        self.report = None
        self.plan = None
        self._checks = []
        self.query_one("#foreign-checks", CheckList).clear_checks()
        self.query_one("#start", Button).disabled = True
        self.query_one("#foreign-review-status", Static).update("Checking the source, the target and the selection…")
        self.refresh_bindings()
        choices = self.choices
        self._validate(ticket, choices.source, choices.target, choices.plan_options())

    @work(thread=True, exit_on_error=False, exclusive=True, group="validate", description="Validating the plan")
    def _validate(self, ticket: Ticket, source: ForeignEndpoint, target: Endpoint, options: dict[str, Any]) -> None:
        def emit(event: Event) -> None:
            if isinstance(event, CheckReported):
                self.post_message(CheckArrived(ticket, (event.status, event.name, event.observed, event.remedy,
                                                        None)))

        try:
            plan = self.services.build_foreign_plan(source, target, options)
            report = self.services.foreign_validate(plan, emit)
        except PgtideError as exc:
            self.post_message(ValidationFailed(ticket, exc))
            return
        self.post_message(ForeignValidated(ticket, plan, report))

    @on(CheckArrived)
    def _check_arrived(self, message: CheckArrived) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self._checks.append(message.line)
        self.query_one("#foreign-checks", CheckList).add_check(*message.line)
        self.query_one("#foreign-review-status", Static).update(f"Checking… {len(self._checks)} checks so far")

    @on(ValidationFailed)
    def _validation_failed(self, message: ValidationFailed) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.query_one("#foreign-review-status", Static).update(
            Text(f"✖ the checks could not run: {message.error.title}: {message.error.cause}", style="bold red"))
        self.pgtide.show_error(message.error)

    @on(ForeignValidated)
    def _validated(self, message: ForeignValidated) -> None:
        if not self.requests.is_current(message.ticket):
            return
        report = message.report
        self.report, self.plan = report, message.plan
        checks: list[tuple[str, str, str, str, str | None]] = [
            (c.status, c.name, c.observed, c.remedy, None) for c in report.checks]
        self._checks = checks
        self.query_one("#foreign-checks", CheckList).show_checks(checks)
        errors = sum(1 for c in report.checks if c.status == "error")
        warnings = sum(1 for c in report.checks if c.status == "warning")
        status = self.query_one("#foreign-review-status", Static)
        if errors:
            status.update(Text(f"✖ {errors} error(s), {warnings} warning(s): Start waits until the errors are "
                               "fixed (each says how).", style="bold red"))
        else:
            status.update(Text(f"✔ ready to start · {warnings} warning(s) to read", style="bold green"))
        self.query_one("#start", Button).disabled = bool(errors)
        self.query_one("#foreign-plan-words", WrapStatic).update(foreign_plan_in_words(message.plan, self.choices))
        self.refresh_bindings()

    # -- options and starting ------------------------------------------------------------------------

    @on(TickBox.Changed, "#foreign-drop-existing")
    def _drop_changed(self, event: TickBox.Changed) -> None:
        if self.choices.drop_existing != event.value:
            self.choices.drop_existing = event.value
            self.action_revalidate()

    def start_blocked_reason(self) -> str | None:
        if self.report is None or self.plan is None:
            return "The checks are still running: Start is possible once every check has passed."
        errors = [c for c in self.report.checks if c.status == "error"]
        if errors:
            return f"{len(errors)} check(s) failed; the first: {errors[0].name}: {errors[0].observed}"
        return None

    def action_start(self) -> None:
        reason = self.start_blocked_reason()
        if reason is not None or self.plan is None:
            self.notify(reason or "Not checked yet.", title="Cannot start", severity="warning", timeout=10)
            return
        plan = self.plan
        if not plan.drop_existing:
            self.pgtide.start_foreign_migration(plan)
            return
        names = ", ".join(t.name for t in self.choices.picked_tables[:12])

        def answered(yes: bool | None) -> None:
            if yes:
                self.pgtide.start_foreign_migration(plan)

        self.app.push_screen(ConfirmModal(
            "Replace existing target tables?",
            f"Tables of these names that already exist in {plan.target.dbname}.{plan.target_schema} and are not "
            f"from this migration are dropped, with their rows, and created again: {names}.",
            yes="Drop and copy", no="Keep them"), answered)

    def action_back(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#again")
    def _again_pressed(self) -> None:
        self.action_revalidate()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()
