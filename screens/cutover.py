"""Cutover: the preflight checklist with remedies, the fence choice, a typed confirmation,
then each step live with its timer, Abort until the switch, and the measured downtime.

Core does the work (engine/cutover.py, through ``Services.cutover``); this screen shows it.
Nothing is changed on a server before the user typed the database name and pressed Cut over:
the preflight only reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, RadioSet, Select, Static

from ..core.infra.errors import PgtideError
from ..widgets.toggles import Choice, TickBox
from .base import PgtideScreen
from .requests import RequestTracker, Ticket

if TYPE_CHECKING:
    from ..core.engine.cutover import CutoverResult, Preflight
    from ..core.model.plan import Plan
    from .services import CutoverRun

_MARKS = {"ok": ("✓", "green"), "warning": ("!", "yellow"), "error": ("✗", "bold red")}
_STEP_MARKS = {"started": ("▶", "cyan"), "done": ("✓", "green"), "failed": ("✗", "bold red"), "skipped": ("–", "dim")}
#: Until this step starts, Abort undoes everything; from then on the target takes over.
_POINT_OF_NO_RETURN = "switch"


class PreflightDone(Message):
    def __init__(self, ticket: Ticket, preflight: Preflight | None, error: BaseException | None) -> None:
        super().__init__()
        self.ticket, self.preflight, self.error = ticket, preflight, error


class StepReported(Message):
    def __init__(self, step: str, state: str, detail: str, seconds: float | None) -> None:
        super().__init__()
        self.step, self.state, self.detail, self.seconds = step, state, detail, seconds


class CutoverDone(Message):
    def __init__(self, result: CutoverResult | None, error: BaseException | None) -> None:
        super().__init__()
        self.result, self.error = result, error


@dataclass
class _Step:
    name: str
    state: str
    detail: str
    started: float
    seconds: float | None = None


def checks_text(preflight: Preflight, *, force: bool) -> Text:
    """The checklist: one line per check, its remedy under it; forced errors say so."""
    text = Text()
    for index, check in enumerate(preflight.checks):
        if index:
            text.append("\n")
        mark, style = _MARKS[check.status]
        forced = check.status == "error" and force and check.forceable
        text.append(f"{mark} ", style="yellow" if forced else style)
        where = f" [{check.database}]" if check.database else ""
        text.append(f"{check.name}{where}: ", style="bold")
        text.append(check.observed)
        if forced:
            text.append("  (passed over: force)", style="yellow")
        if check.remedy and check.status != "ok":
            text.append(f"\n    fix: {check.remedy}", style="dim")
    return text


def steps_text(steps: list[_Step], now: float) -> Text:
    text = Text()
    for index, step in enumerate(steps):
        if index:
            text.append("\n")
        mark, style = _STEP_MARKS.get(step.state, ("?", ""))
        seconds = step.seconds if step.seconds is not None else now - step.started
        text.append(f"{mark} {step.name:<20}", style=style)
        text.append(f"{seconds:7.2f} s", style="bold" if step.state == "started" else "")
        if step.detail:
            text.append(f"  {step.detail}", style="dim")
    return text


class CutoverScreen(PgtideScreen):
    """Reached from the dashboard when every database streams."""

    STEP = "Cutover"

    BINDINGS = [
        Binding("p", "preflight", "Preflight"),
        Binding("escape", "back", "Dashboard"),
    ]

    DEFAULT_CSS = """
    CutoverScreen #cutover-body { padding: 0 1; }
    CutoverScreen .row { height: auto; }
    CutoverScreen .row > Label { width: 16; padding: 1 1 0 0; }
    CutoverScreen #fence { width: auto; }
    CutoverScreen #pgbouncer-row { display: none; }
    CutoverScreen.pgbouncer #pgbouncer-row { display: block; }
    CutoverScreen #pgbouncer-row Input { width: 1fr; }
    CutoverScreen #verify-mode { width: 42; }
    CutoverScreen RadioSet, CutoverScreen Select { border: none; }
    CutoverScreen TickBox { border: none; padding: 0 1; height: 1; }
    CutoverScreen .row > Label { padding: 0 1 0 0; }
    CutoverScreen #checks, CutoverScreen #steps, CutoverScreen #result { height: auto; margin-top: 1; }
    CutoverScreen #confirm { margin-top: 1; }
    CutoverScreen .button-row { height: auto; }
    """

    def __init__(self, plan: Plan, databases: tuple[str, ...]) -> None:
        super().__init__()
        self.plan = plan
        self.databases = databases
        self.preflight: Preflight | None = None
        self.requests = RequestTracker()
        self.steps: list[_Step] = []
        self.running = False
        self.switching = False
        self.finished = False
        self._run: CutoverRun | None = None

    @property
    def expected_confirmation(self) -> str:
        return self.databases[0] if len(self.databases) == 1 else "cutover"

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="cutover-body"):
            yield Static(f"Cut over {', '.join(self.databases)}: {self.plan.source.redacted()} → "
                         f"{self.plan.target.redacted()}", id="cutover-title", markup=False)
            with Horizontal(classes="row"):
                yield Label("Fence writes")
                with RadioSet(id="fence"):
                    yield Choice("roles: read-only + end sessions", value=True, id="fence-roles")
                    yield Choice("pgbouncer: PAUSE, then RESUME on the target", id="fence-pgbouncer")
                    yield Choice("none: I stopped the application", id="fence-none")
            with Horizontal(classes="row", id="pgbouncer-row"):
                yield Label("PgBouncer")
                yield Input(placeholder="admin console URL …/pgbouncer", id="pgbouncer-url")
                yield Input(placeholder="the %include-d [databases] file", id="pgbouncer-file")
            with Horizontal(classes="row"):
                yield Label("Final verify")
                yield Select([("written since the last verify", "changed"), ("every table", "full"),
                              ("none", "none")], value="changed", allow_blank=False, id="verify-mode")
            yield TickBox("Keep a reverse subscription for a rollback window (PostgreSQL 16+)", id="reverse")
            yield TickBox("Lift the fence on the source after the switch", id="unfence")
            yield TickBox("Copy the application roles' SCRAM verifiers to the target", id="copy-passwords")
            yield TickBox("Pass over the checks that allow it (lag, last verify, login roles)", id="force")
            yield Static(Text("Press p (or Preflight) to check what the cutover would do. It changes nothing.",
                              style="dim"), id="checks")
            yield Input(placeholder=f"type {self.expected_confirmation!r} to confirm", id="confirm", disabled=True)
            yield Static("", id="steps")
            yield Static("", id="result")
        with Horizontal(classes="button-row"):
            yield Button("Back", id="back")
            yield Button("Preflight", id="preflight", variant="primary")
            yield Button("Cut over", id="go", variant="error", disabled=True)
            yield Button("Abort", id="abort", variant="warning", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.1, self._tick)

    # -- options ---------------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The cutover's options as plain values (core builds and checks CutoverOptions)."""
        pressed = self.query_one("#fence", RadioSet).pressed_button
        fence = (pressed.id or "fence-roles").removeprefix("fence-") if pressed else "roles"
        options: dict[str, Any] = {
            "fence": fence,
            "verify": self.query_one("#verify-mode", Select).value,
            "reverse": self.query_one("#reverse", Checkbox).value,
            "unfence_source": self.query_one("#unfence", Checkbox).value,
            "copy_role_passwords": self.query_one("#copy-passwords", Checkbox).value,
            "force": self.query_one("#force", Checkbox).value,
        }
        if fence == "pgbouncer":
            options["pgbouncer_url"] = self.query_one("#pgbouncer-url", Input).value.strip()
            options["pgbouncer_databases_file"] = self.query_one("#pgbouncer-file", Input).value.strip()
        return options

    @on(RadioSet.Changed, "#fence")
    def _fence_changed(self, event: RadioSet.Changed) -> None:
        self.set_class(event.pressed.id == "fence-pgbouncer", "pgbouncer")
        self._invalidate()

    @on(Checkbox.Changed)
    @on(Select.Changed)
    @on(Input.Changed, "#pgbouncer-url, #pgbouncer-file")
    def _option_changed(self) -> None:
        if self.query_one("#force", Checkbox).value and self.preflight is not None:
            self._show_checks()
        self._invalidate(keep=True)

    def _invalidate(self, *, keep: bool = False) -> None:
        """A changed option needs a new preflight before anything runs (a forced check only re-draws)."""
        if self.running or self.finished:
            return
        if not keep:
            self.preflight = None
            self.requests.supersede("preflight")
            self.query_one("#checks", Static).update(Text("Options changed: run the preflight again.", style="dim"))
        self._update_gate()

    # -- preflight ---------------------------------------------------------------------------------

    def action_preflight(self) -> None:
        if self.running or self.finished:
            return
        ticket = self.requests.start("preflight")
        self.preflight = None
        self.query_one("#checks", Static).update(Text("Running the preflight (reads only)…", style="cyan"))
        self._update_gate()
        self._preflight(ticket, self.plan, self.options())

    @work(thread=True, exit_on_error=False, group="cutover-preflight", description="Cutover preflight (reads only)")
    def _preflight(self, ticket: Ticket, plan: Plan, options: dict[str, Any]) -> None:
        try:
            run = self.services.cutover(plan, options, lambda event: None)
            self.post_message(PreflightDone(ticket, run.preflight(), None))
        except Exception as exc:
            self.post_message(PreflightDone(ticket, None, exc))

    @on(PreflightDone)
    def _preflight_done(self, message: PreflightDone) -> None:
        if not self.requests.is_current(message.ticket):
            return  # options changed meanwhile: that answer is for another cutover
        if message.error is not None:
            self.query_one("#checks", Static).update(Text(f"✗ preflight failed: {_describe(message.error)}",
                                                          style="bold red"))
            return
        self.preflight = message.preflight
        self._show_checks()
        self._update_gate()
        self.query_one("#checks", Static).scroll_visible()
        if self.preflight is not None and self.preflight.ok(force=self.query_one("#force", Checkbox).value):
            self.query_one("#confirm", Input).focus()

    def _show_checks(self) -> None:
        if self.preflight is None:
            return
        force = self.query_one("#force", Checkbox).value
        text = checks_text(self.preflight, force=force)
        errors = self.preflight.errors(force=force)
        text.append("\n\n")
        if errors:
            text.append(f"{len(errors)} check(s) stop the cutover: fix them and run the preflight again.",
                        style="bold red")
        else:
            text.append(f"Ready. Type {self.expected_confirmation!r} below, then Cut over.", style="bold green")
        self.query_one("#checks", Static).update(text)

    def _update_gate(self) -> None:
        ready = (self.preflight is not None and not self.running and not self.finished
                 and self.preflight.ok(force=self.query_one("#force", Checkbox).value))
        confirm = self.query_one("#confirm", Input)
        confirm.disabled = not ready
        typed = confirm.value.strip() == self.expected_confirmation
        self.query_one("#go", Button).disabled = not (ready and typed)
        self.query_one("#preflight", Button).disabled = self.running or self.finished
        self.query_one("#abort", Button).disabled = not self.running or self.switching

    @on(Input.Changed, "#confirm")
    def _confirm_changed(self) -> None:
        self._update_gate()

    @on(Input.Submitted, "#confirm")
    def _confirm_submitted(self) -> None:
        if not self.query_one("#go", Button).disabled:
            self.start()

    # -- the run ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self.preflight is None or self.running or self.finished:
            return
        self.running = True
        self.steps = []
        self._update_gate()
        self.query_one("#abort", Button).focus()
        self._cutover(self.plan, self.options(), self.preflight)

    @work(thread=True, exit_on_error=False, group="cutover", description="Cutting over")
    def _cutover(self, plan: Plan, options: dict[str, Any], preflight: Preflight) -> None:
        def emit(event: Any) -> None:
            if getattr(event, "kind", "") == "CutoverStep":
                self.post_message(StepReported(event.step, event.state, event.detail, event.seconds))

        try:
            run = self.services.cutover(plan, options, emit)
            self._run = run
            result = run.run(preflight)
        except BaseException as exc:  # the error is shown here; KeyboardInterrupt never reaches a worker
            self.post_message(CutoverDone(None, exc))
            return
        finally:
            self._run = None
        self.post_message(CutoverDone(result, None))

    @on(StepReported)
    def _step(self, message: StepReported) -> None:
        now = time.monotonic()
        existing = next((s for s in reversed(self.steps) if s.name == message.step), None)
        if message.state == "started" or existing is None:
            self.steps.append(_Step(message.step, message.state, message.detail, now))
        else:
            existing.state, existing.seconds = message.state, message.seconds
            existing.detail = message.detail or existing.detail
        if message.step == _POINT_OF_NO_RETURN and message.state == "started":
            self.switching = True
        self._update_gate()
        self._tick()

    def _tick(self) -> None:
        if self.steps:
            self.query_one("#steps", Static).update(steps_text(self.steps, time.monotonic()))

    @on(CutoverDone)
    def _done(self, message: CutoverDone) -> None:
        self.running = False
        self.finished = message.result is not None
        result_box = self.query_one("#result", Static)
        if message.result is not None:
            result = message.result
            text = Text()
            if result.downtime_seconds is not None:
                text.append(f"✓ cut over: write downtime {result.downtime_seconds:.2f} s", style="bold green")
                text.append(" (fence up to switch done, measured)\n", style="dim")
            text.append(f"{result.sequences} sequence(s) set, {len(result.matviews)} materialized view(s) refreshed, "
                        f"{result.verified_tables} table(s) verified while fenced\n")
            for step in result.next_steps:
                text.append(f"next: {step}\n", style="bold")
            result_box.update(text)
            model = self.pgtide.dashboard
            if model is not None and model.plan == self.plan:
                model.torn_down = True  # nothing replicates any more: the dashboard stops polling
            self.pgtide.notify("The target is the primary now.", title="Cutover done", timeout=10)
        else:
            result_box.update(Text(f"✗ {_describe(message.error)}", style="bold red"))
            self.preflight = None  # what stands now must be checked again before another try
            self.query_one("#confirm", Input).value = ""
        self.switching = False
        self._update_gate()

    def action_abort(self) -> None:
        if self.running and not self.switching and self._run is not None:
            self._run.cancel()
            self.query_one("#result", Static).update(Text("Aborting: lifting the fence…", style="yellow"))

    def action_back(self) -> None:
        if self.running:
            self.pgtide.notify("The cutover is running: Abort it first (possible until the switch).",
                               title="Cutover running", severity="warning")
            return
        self.dismiss_result()

    def dismiss_result(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#preflight")
    def _preflight_pressed(self) -> None:
        self.action_preflight()

    @on(Button.Pressed, "#go")
    def _go_pressed(self) -> None:
        self.start()

    @on(Button.Pressed, "#abort")
    def _abort_pressed(self) -> None:
        self.action_abort()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()


def _describe(error: BaseException | None) -> str:
    if isinstance(error, PgtideError):
        return f"{error.title}: {error.cause}" + (f" — {error.remedy}" if error.remedy else "")
    return str(error) or type(error).__name__
