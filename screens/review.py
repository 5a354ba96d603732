"""Review & estimate: the validate checklist, sizes and times, the exact plan in words; save or start."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Footer, Header, Static

from ..core.infra.errors import PgtideError
from ..core.infra.events import CheckReported, Event
from ..core.model.selection import Selection, format_qualified_name, quote_ident
from ..widgets.check_list import CheckList, WrapStatic
from ..widgets.formatting import human_bytes, human_count, human_seconds
from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal, NamePrompt, TypedConfirmModal
from ..widgets.toggles import TickBox
from .base import PgtideScreen
from .messages import (
    CheckArrived,
    CheckLine,
    ProfileSaved,
    ValidationFailed,
    ValidationFinished,
)
from .requests import RequestTracker, Ticket

if TYPE_CHECKING:
    from ..core.catalog.estimate import Estimate
    from ..core.catalog.scope import Scope
    from ..core.engine.validate import Report
    from ..core.infra.endpoint import Endpoint
    from ..core.model.plan import Plan
    from ..core.model.profiles import Profile

ESTIMATE_ROWS_SHOWN = 200


@dataclass(frozen=True)
class PlanInputs:
    """What a plan is built from, copied from the wizard on the UI thread.

    Workers get this instead of reading the wizard: the wizard keeps changing meanwhile (the
    drop-existing box, the next re-check), and a late read would build a plan nobody asked for.
    """

    source: Endpoint
    target: Endpoint
    selection: Selection
    options: Mapping[str, object]


@dataclass(frozen=True)
class ValidationRequest:
    """One validation: its ticket tags every result, so results of a superseded one are dropped."""

    ticket: Ticket
    inputs: PlanInputs


def plan_in_words(plan: Plan, scope: Scope | None) -> Text:
    """What will happen, step by step, in the words a reviewer needs."""
    text = Text()
    text.append("From  ", style="bold")
    text.append(plan.source.redacted())
    text.append("\nTo    ", style="bold")
    text.append(plan.target.redacted())
    options = plan.options
    text.append("\n")
    if options.copy_roles:
        text.append("\nRoles are copied to the target first (without passwords or superuser rights).\n")
    if scope is None:
        text.append("The tables are known once the checks have read the source.", style="dim")
        return text
    for db in scope.databases:
        copied = [t for t in db.tables if t.copies_rows and not t.info.is_partitioned]
        filtered = [t for t in copied if t.where]
        schema_only = [t for t in db.tables if not t.copies_rows]
        text.append(f"\nDatabase {quote_ident(db.name)}", style="bold")
        text.append(f": {len(copied)} table(s) with rows ({human_bytes(db.estimated_bytes)})")
        if schema_only:
            text.append(f", {len(schema_only)} schema-only")
        if db.excluded:
            text.append(f", {len(db.excluded)} left out")
        text.append(
            "\n  • create the database on the target, publication and replication slot on the source\n"
            "  • schema and rows copied under the slot's snapshot "
            f"({options.jobs} parallel workers, {'pgtide copy' if options.copy_mode == 'snapshot' else 'server copy'})\n"
            "  • indexes and constraints built after the data, sequences set from the source\n"
            "  • subscription on the slot: every change since the snapshot streams until cutover\n"
        )
        for table in filtered[:20]:
            name = format_qualified_name(table.info.qualified)
            if table.time_filter is not None:
                text.append(f"  {name}: only rows with {table.time_filter} (cut: {table.where})\n")
            else:
                text.append(f"  {name}: only rows where {table.where}\n")
        if len(filtered) > 20:
            text.append(f"  … and {len(filtered) - 20} more filtered tables\n", style="dim")
        for table in schema_only[:10]:
            text.append(f"  {format_qualified_name(table.info.qualified)}: definition only, no rows\n")
        catalog = db.catalog
        not_replicated = []
        if catalog.sequences:
            not_replicated.append(f"{len(catalog.sequences)} sequence(s) (set again at cutover)")
        if catalog.large_objects:
            not_replicated.append(f"{catalog.large_objects} large object(s) (copied once)")
        not_replicated.append("schema changes (DDL)")
        text.append("  Not replicated afterwards: " + ", ".join(not_replicated) + "\n", style="dim")
    return text


class ReviewScreen(PgtideScreen):
    STEP = "4 Review"

    BINDINGS = [
        Binding("g", "start", "Go: start"),
        Binding("s", "save_profile", "Save as profile"),
        Binding("r", "revalidate", "Check again"),
        Binding("f", "fix", "Fix"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.plan: Plan | None = None
        self.report: Report | None = None
        self._checks: list[CheckLine] = []
        #: The validation whose results the screen shows; anything tagged otherwise is superseded.
        self.requests = RequestTracker()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="review-body"):
            with Vertical(id="review-checks"):
                yield Static("Checks", classes="section-title")
                yield Static("Checking…", id="review-status", markup=False)
                yield CheckList(id="checks")
            with VerticalScroll(id="review-right"):
                yield Static("Estimate", classes="section-title")
                yield LiveTable(id="estimate", cursor_type="row", zebra_stripes=True)
                yield Static("", id="estimate-total", markup=False)
                yield Static("Plan", classes="section-title")
                yield WrapStatic("", id="plan-words", markup=False)
        with Horizontal(id="review-options"):
            yield TickBox("Drop and recreate non-empty target databases (asks you to type their names)",
                          id="drop-existing", value=bool(self.wizard.options.get("drop_existing", False)),
                          compact=True)
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Save as profile", id="save")
            yield Button("Check again", id="again")
            yield Button("Start migration", id="start", variant="success", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#estimate", DataTable)
        for label, key in (("Table", "table"), ("Mode", "mode"), ("Size", "size"), ("Rows", "rows"),
                           ("Time", "time")):
            table.add_column(label, key=key)
        self.action_revalidate()

    # -- validating ------------------------------------------------------------------------------

    def _inputs(self) -> PlanInputs | None:
        """A frozen copy of the wizard's endpoints, selection and options, or None after showing why there is none."""
        try:
            selection = self.wizard.selection()
        except PgtideError as exc:
            self.pgtide.show_error(exc)
            return None
        source, target = self.wizard.source, self.wizard.target
        assert source is not None and target is not None
        # A deep copy: options may hold lists, and the wizard's dict keeps changing on this thread.
        options = MappingProxyType(copy.deepcopy(dict(self.wizard.options)))
        return PlanInputs(source, target, selection, options)

    def action_revalidate(self) -> None:
        # Superseded before anything else: from here on, no older worker can touch the screen,
        # even when this request cannot start.
        ticket = self.requests.start("validate")
        self.report = None
        self.plan = None
        self._checks = []
        self.query_one("#checks", CheckList).clear_checks()
        self.query_one("#start", Button).disabled = True
        self.refresh_bindings()
        status = self.query_one("#review-status", Static)
        inputs = self._inputs()
        if inputs is None:
            status.update("Not checked: the selection has a problem (see the message).")
            return
        status.update("Checking the servers and the selection…")
        self._validate(ValidationRequest(ticket, inputs))

    @work(thread=True, exit_on_error=False, exclusive=True, group="validate", description="Validating the plan")
    def _validate(self, request: ValidationRequest) -> None:
        # Reads nothing but ``request``: a thread worker keeps running after a re-check (exclusive
        # only marks it cancelled), so everything it posts carries the request's ticket.
        inputs = request.inputs

        def emit(event: Event) -> None:
            if isinstance(event, CheckReported):
                line = (event.status, event.name, event.observed, event.remedy, event.database)
                self.post_message(CheckArrived(request.ticket, line))

        try:
            plan = self.services.build_plan(inputs.source, inputs.target, inputs.selection, inputs.options)
            report = self.services.validate(plan, emit)
            estimate = self.services.estimate(report.scope) if report.scope is not None else None
        except PgtideError as exc:
            self.post_message(ValidationFailed(request.ticket, exc))
            return
        self.post_message(ValidationFinished(request.ticket, plan, report, estimate))

    @on(CheckArrived)
    def _check_arrived(self, message: CheckArrived) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self._checks.append(message.line)
        self.query_one("#checks", CheckList).add_check(*message.line)
        self.query_one("#review-status", Static).update(f"Checking… {len(self._checks)} checks so far")

    @on(ValidationFailed)
    def _validation_failed(self, message: ValidationFailed) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.query_one("#review-status", Static).update(Text("✖ the checks could not run: " + message.error.title,
                                                             style="bold red"))
        self.pgtide.show_error(message.error)

    @on(ValidationFinished)
    def _validated(self, message: ValidationFinished) -> None:
        if not self.requests.is_current(message.ticket):
            return
        report = message.report
        self.report = report
        self.plan = message.plan
        checks: list[tuple[str, str, str, str, str | None]] = [
            (c.status, c.name, c.observed, c.remedy, c.database) for c in report.checks]
        self._checks = checks
        self.query_one("#checks", CheckList).show_checks(checks)
        errors = sum(1 for c in report.checks if c.status == "error")
        warnings = sum(1 for c in report.checks if c.status == "warning")
        status = self.query_one("#review-status", Static)
        if errors:
            status.update(Text(f"✖ {errors} error(s), {warnings} warning(s): fix the errors to start "
                               "(each says how).", style="bold red"))
        else:
            status.update(Text(f"✔ ready to start · {warnings} warning(s) to read", style="bold green"))
        self.query_one("#start", Button).disabled = bool(errors)
        self._show_estimate(message.estimate)
        self.query_one("#plan-words", Static).update(plan_in_words(message.plan, report.scope))
        self.refresh_bindings()

    def _show_estimate(self, estimate: Estimate | None) -> None:
        table = self.query_one("#estimate", DataTable)
        table.clear()
        total = self.query_one("#estimate-total", Static)
        if estimate is None:
            total.update("No estimate: the selection could not be read.")
            return
        shown = 0
        several = len(estimate.databases) > 1
        for db in estimate.databases:
            for row in db.tables:
                if shown >= ESTIMATE_ROWS_SHOWN:
                    break
                name = f"{quote_ident(db.name)}.{row.display}" if several else row.display
                table.add_row(Text(name), row.mode.replace("_", "-"), human_bytes(row.bytes),
                              human_count(row.rows, approximate=True), human_seconds(row.seconds))
                shown += 1
        rate = f"{human_bytes(estimate.bytes_per_second)}/s " + ("measured here" if estimate.measured
                                                                 else "assumed (no copy measured yet)")
        count = sum(len(db.tables) for db in estimate.databases)
        more = f" (largest {shown} shown)" if count > shown else ""
        total.update(f"Total {human_bytes(estimate.bytes)} in {count} table(s){more}: about "
                     f"{human_seconds(estimate.seconds)} at {rate}")

    # -- one-step fixes ----------------------------------------------------------------------------

    def _fixes(self) -> list[Any]:
        if self.report is None:
            return []
        return [fix for check in self.report.checks if check.status != "ok" for fix in check.fixes]

    def action_fix(self) -> None:
        fixes = self._fixes()
        if not fixes or self.plan is None:
            self.pgtide.notify("No check here has a fix pgtide can apply: each says what to do.", timeout=6)
            return
        plan = self.plan
        lines = []
        for fix in fixes:
            lines.append(f"{fix.why}" + (" (restart needed: pgtide never restarts a server)"
                                         if fix.restart_needed else ""))
            lines += [f"  [{st.server} · {st.database}] {st.sql}" for st in fix.statements]

        def answered(yes: bool | None) -> None:
            if yes:
                self._apply_fixes(plan, fixes)

        self.app.push_screen(ConfirmModal("Apply these fixes?", "pgtide runs, in this order:\n" + "\n".join(lines)
                                          + "\n\nThen it checks again.", yes="Apply", no="Cancel"), answered)

    @work(thread=True, exit_on_error=False, group="fix", description="Applying validate's fixes")
    def _apply_fixes(self, plan: Plan, fixes: list[Any]) -> None:
        done = self.services.apply_fixes(plan, fixes, lambda event: None)
        self.app.call_from_thread(self._fixed, done)

    def _fixed(self, done: list[str]) -> None:
        self.pgtide.notify(f"{len(done)} statement(s) applied; checking again.", title="Fixes", timeout=6)
        self.action_revalidate()

    def start_blocked_reason(self) -> str | None:
        """Why Start cannot go ahead now, in words; None when it can."""
        if self.report is None or self.plan is None:
            return "The checks are still running: Start is possible once every check has passed."
        errors = self.report.errors
        if errors:
            first = errors[0]
            where = f" [{first.database}]" if first.database else ""
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return (f"Start is blocked by {len(errors)} failed check(s): {first.name}{where}: {first.observed}"
                    f"{more}. Each failed check says how to fix it; then press r to check again.")
        return None

    def databases_dropped(self) -> list[str]:
        """Target databases the validated plan drops and creates again (validate's "target database" warnings)."""
        if self.report is None or not self.wizard.options.get("drop_existing"):
            return []
        return [c.database for c in self.report.checks
                if c.name == "target database" and c.status == "warning" and c.database]

    # -- saving ------------------------------------------------------------------------------------

    def action_save_profile(self) -> None:
        inputs = self._inputs()
        if inputs is None:
            return
        profile = self.wizard.profile

        def chosen(name: str | None) -> None:
            if name:
                self._save(name, inputs, profile if profile and profile.name == name else None)

        self.app.push_screen(NamePrompt("Save as profile", value=self.wizard.profile_name or "",
                                        hint="Passwords are never written to the profile (OS keyring or ~/.pgpass)."),
                             chosen)

    @work(thread=True, exit_on_error=False, description="Saving a profile")
    def _save(self, name: str, inputs: PlanInputs, base: Profile | None) -> None:
        # What was on screen when Save was pressed, whatever the wizard holds by now.
        plan = self.services.build_plan(inputs.source, inputs.target, inputs.selection, inputs.options)
        self.post_message(ProfileSaved(self.services.save_profile(name, plan, base)))

    @on(ProfileSaved)
    def _saved(self, message: ProfileSaved) -> None:
        self.wizard.profile = message.profile
        self.notify(f"Saved profile {message.profile.name} (no password in it)", timeout=4)

    @on(TickBox.Changed, "#drop-existing")
    def _drop_existing_changed(self, event: TickBox.Changed) -> None:
        self.wizard.options["drop_existing"] = event.value
        self.action_revalidate()

    # -- moving on -----------------------------------------------------------------------------------

    def action_start(self) -> None:
        reason = self.start_blocked_reason()
        if reason is not None or self.report is None or self.plan is None:
            self.notify(reason or "Start is possible once every check passes.", title="Not started",
                        severity="warning", timeout=10)
            return
        plan, scope = self.plan, self.report.scope
        dropped = self.databases_dropped()
        if not dropped:
            self.pgtide.start_migration(plan, scope)
            return
        names = " ".join(dropped)
        target = plan.target.redacted()

        def answered(yes: bool | None) -> None:
            # The plan confirmed is the plan started: a re-check meanwhile would have replaced self.plan.
            if yes and self.plan is plan:
                self.pgtide.start_migration(plan, scope)
            elif yes:
                self.notify("The plan changed while the question was open: nothing was started.",
                            severity="warning")

        self.app.push_screen(TypedConfirmModal(
            f"Drop {len(dropped)} target database(s)?",
            f"On the target {target}, the database(s) {', '.join(dropped)} are not empty. Starting drops them — "
            "every table and row in them is lost, with no undo — and creates them again from the source.",
            names, yes="Drop and start"), answered)

    def action_back(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save_profile()

    @on(Button.Pressed, "#again")
    def _again_pressed(self) -> None:
        self.action_revalidate()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()
