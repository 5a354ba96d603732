"""Connect: the source and target servers, each tested in a worker before moving on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Static

from ..core.infra.errors import PgtideError
from ..widgets.endpoint_form import EndpointForm
from .base import WizardStep
from .foreign_state import ForeignChoices
from .messages import (
    EndpointParsed,
    EndpointRejected,
    EndpointsReady,
    ForeignSourceParsed,
    ForeignSourceReady,
    ForeignSourceTested,
    KeyringChecked,
    NextBlocked,
    PasswordRemembered,
    ServerProbed,
    ServerProbeFailed,
)
from .requests import RequestTracker, Ticket
from .state import EndpointFields, Side

if TYPE_CHECKING:
    from ..core.catalog.server import ServerInfo
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.source import CaptureCheck, SourceTable
    from ..core.infra.endpoint import Endpoint

SIDES: tuple[Side, ...] = ("source", "target")


def privileges(info: ServerInfo) -> str:
    names = [name for name, has in (("superuser", info.is_superuser), ("replication", info.can_replicate),
                                    ("createdb", info.can_create_database)) if has]
    return ", ".join(names) or "no special privileges"


def server_lines(info: ServerInfo, side: Side) -> tuple[str, list[str]]:
    """What a successful test shows: version, wal_level and the privileges that matter on this side."""
    version = info.version.split()[0]
    headline = f"PostgreSQL {version}"
    details = [f"wal_level = {info.wal_level}", f"role {info.user}: {privileges(info)}"]
    if side == "source" and info.wal_level != "logical":
        details.append("▲ the source needs wal_level = logical (set it and restart the server)")
    if side == "source" and not info.can_replicate:
        details.append("▲ the role needs REPLICATION (ALTER ROLE … WITH REPLICATION)")
    if side == "target" and not info.can_create_database:
        details.append("▲ the role needs CREATEDB to create the databases")
    return headline, details


#: Foreign sources by the scheme the user wrote.
FOREIGN_NAMES = {"sqlite": "SQLite", "mysql": "MySQL", "mariadb": "MariaDB", "mongodb": "MongoDB",
                 "mongodb+srv": "MongoDB"}


#: The app stores PostgreSQL passwords only; the CLI's profile command keeps a foreign source's.
FOREIGN_REMEMBER = "CLI: pgtide profile save"


def foreign_name(endpoint: ForeignEndpoint) -> str:
    return FOREIGN_NAMES.get(endpoint.scheme, endpoint.kind)


def show_foreign_test(form: EndpointForm, endpoint: ForeignEndpoint, tables: list[SourceTable],
                      capture: CaptureCheck) -> None:
    """What testing a foreign source shows: its tables, and whether changes can stream from it."""
    headline = f"{foreign_name(endpoint)} · {len(tables)} table{'' if len(tables) == 1 else 's'}"
    keyless = sum(1 for t in tables if not t.key)
    rows = f"about {sum(t.rows for t in tables):,} rows" + (f" · {keyless} without a key" if keyless else "")
    if capture.ok:
        form.show_ok(f"{headline} · {capture.observed} (change capture ready)", [rows])
        return
    form.show_problem(headline, f"{rows}; change capture: {capture.observed}",
                      capture.remedy or "One-shot copies work; a refresh interval keeps re-reading the tables.",
                      warning=True)


@dataclass(frozen=True)
class SideInputs:
    """One form as a worker gets it: a read-only copy of its libpq parameters, taken on the UI thread.

    The wizard's EndpointFields stays mutable (a pasted URL replaces its ``extra``), so a worker
    holding it could connect with parameters the user never tested.
    """

    side: Side
    params: Mapping[str, str]
    remember: bool

    @classmethod
    def of(cls, side: Side, fields: EndpointFields, remember: bool) -> SideInputs:
        return cls(side, MappingProxyType(dict(fields.params())), remember)

    @property
    def password(self) -> str:
        return self.params.get("password", "")


class ConnectScreen(WizardStep):
    STEP = "1 Connect"

    BINDINGS = [
        Binding("ctrl+t", "test_both", "Test both"),
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        #: Per side, the newest URL parse and server test; per screen, the newest Next.
        self.requests = RequestTracker()
        #: Per side, the parameters of the newest test: an edit away from them voids its mark.
        self._tested: dict[Side, dict[str, str]] = {}
        self._keyring_available = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="connect-body"):
            with Horizontal(id="forms"):
                yield EndpointForm("source", "Source: migrate from", id="source-form")
                yield EndpointForm("target", "Target: migrate to", id="target-form")
            yield Static("", id="keyring-note", markup=False)
            with Horizontal(classes="button-row"):
                yield Button("Back", id="back")
                yield Button("Next: pick databases", id="next", variant="primary")
        yield Footer()

    def form(self, side: Side) -> EndpointForm:
        return self.query_one(f"#{side}-form", EndpointForm)

    def on_mount(self) -> None:
        for side in SIDES:
            fields = self.wizard.fields(side)
            values = {"host": fields.host, "port": fields.port, "dbname": fields.dbname, "user": fields.user,
                      "password": fields.password, "sslmode": fields.sslmode}
            form = self.form(side)
            form.load(values)
            form.remember = self.wizard.remember_password[side]
            info = self.wizard.server_info.get(side)
            if side == "source" and self.wizard.foreign_source is not None:
                # A foreign source (from --source, or back from Pick): its URL, not PostgreSQL's fields.
                form.load({**values, "host": "", "port": "", "dbname": "", "user": "", "sslmode": ""},
                          url=self.wizard.foreign_source.to_url())
                form.show_result(Text(f"{foreign_name(self.wizard.foreign_source)} source "
                                      f"{self.wizard.foreign_source.redacted()}: Test connection lists its tables.",
                                      style="dim"))
            elif info is not None:
                form.show_ok(*server_lines(info, side))
                self._tested[side] = dict(fields.params())
        self._keyring_status()
        self.query_one("#source-form").query_one("#host").focus()

    # -- keyring ----------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, description="Looking for an OS keyring")
    def _keyring_status(self) -> None:
        available, reason = self.services.keyring_status()
        if available:
            text = f"Passwords: {reason}. Tick 'Remember password' to keep one there."
        else:
            text = f"Passwords: {reason}. {self.services.pgpass_remedy()}"
        self.post_message(KeyringChecked(text, available))

    @on(KeyringChecked)
    def _keyring_checked(self, message: KeyringChecked) -> None:
        self.query_one("#keyring-note", Static).update(message.text)
        self._keyring_available = message.available
        for side in SIDES:
            if side == "source" and self.wizard.foreign_source is not None:
                self.form(side).offer_remember(False, reason=FOREIGN_REMEMBER)
            else:
                self.form(side).offer_remember(message.available)

    @on(EndpointForm.Edited)
    def _edited(self, event: EndpointForm.Edited) -> None:
        side: Side = event.form.side  # type: ignore[assignment]
        values = event.form.values()
        if side == "source" and self.wizard.foreign_source is not None \
                and any(values[name] for name in ("host", "port", "dbname", "user")):
            # Typing a PostgreSQL server's fields: the pasted foreign source is no longer the source.
            self._forget_foreign()
        current = dict(EndpointFields(**values, extra=dict(self.wizard.fields(side).extra)).params())
        if current == self._tested.get(side):
            # Back to what was (or is being) tested: that test still speaks of these fields.
            return
        self._forget_test(side)

    def _forget_test(self, side: Side) -> None:
        # The mark spoke of the fields as they were; a test still running speaks of them too.
        self.wizard.server_info.pop(side, None)
        self.requests.supersede(f"test-{side}")
        self._tested.pop(side, None)

    # -- URL paste ------------------------------------------------------------------------------

    @on(EndpointForm.UrlEntered)
    def _url_entered(self, event: EndpointForm.UrlEntered) -> None:
        side: Side = event.form.side  # type: ignore[assignment]
        self._parse_url(self.requests.start(f"url-{side}"), side, event.text, event.final)

    @work(thread=True, exit_on_error=False, exclusive=True, group="parse-url", description="Reading a pasted URL")
    def _parse_url(self, ticket: Ticket, side: Side, text: str, final: bool) -> None:
        try:
            if side == "source" and self.services.looks_foreign(text):
                self.post_message(ForeignSourceParsed(ticket, self.services.parse_foreign(text)))
                return
            endpoint = self.services.parse_endpoint(text)
        except PgtideError as exc:
            if final:
                self.post_message(EndpointRejected(ticket, side, exc))
            return
        self.post_message(EndpointParsed(ticket, side, EndpointFields.from_params(endpoint.params),
                                         endpoint.to_url()))

    @on(EndpointParsed)
    def _url_parsed(self, message: EndpointParsed) -> None:
        # One keystroke, one parse: a slow parse of a shorter URL must not refill the form afterwards.
        if not self.requests.is_current(message.ticket):
            return
        form = self.form(message.side)
        fields = message.fields
        values = {"host": fields.host, "port": fields.port, "dbname": fields.dbname, "user": fields.user,
                  "sslmode": fields.sslmode}
        url = None
        if fields.password:
            # The password goes into the masked field and out of the URL box, at once.
            values["password"] = fields.password
            url = message.url
        form.load(values, url=url)
        self.wizard.fields(message.side).extra = dict(fields.extra)
        if message.side == "source":
            self._forget_foreign()
        self._forget_test(message.side)
        form.mark_untested()

    @on(ForeignSourceParsed)
    def _foreign_parsed(self, message: ForeignSourceParsed) -> None:
        if not self.requests.is_current(message.ticket):
            return
        endpoint = message.endpoint
        form = self.form("source")
        # The PostgreSQL fields would describe another server: emptied, so nothing stale is tested.
        values = {"host": "", "port": "", "dbname": "", "user": "", "sslmode": ""}
        url = None
        if endpoint.password:
            values["password"] = endpoint.password
            url = endpoint.to_url()
        form.load(values, url=url)
        self.wizard.fields("source").extra = {}
        self.wizard.foreign_source = endpoint.with_password(None)
        self.wizard.foreign_tables = self.wizard.foreign_capture = None
        form.offer_remember(False, reason=FOREIGN_REMEMBER)
        self._forget_test("source")
        note = "" if endpoint.kind == "sqlite" else (" The Password field is its password (empty: the OS keyring "
                                                     "or PGTIDE_SOURCE_PASSWORD).")
        form.show_result(Text(f"{foreign_name(endpoint)} source {endpoint.redacted()}: Test connection lists its "
                              f"tables.{note}", style="dim"))

    def _forget_foreign(self) -> None:
        if self.wizard.foreign_source is not None:
            self.form("source").offer_remember(self._keyring_available)
        self.wizard.foreign_source = None
        self.wizard.foreign_tables = self.wizard.foreign_capture = None

    def _foreign_endpoint(self) -> ForeignEndpoint | None:
        """The foreign source with the password typed into the masked field, if one is set."""
        endpoint = self.wizard.foreign_source
        if endpoint is None:
            return None
        password = self.form("source").value_of("password")
        return endpoint.with_password(password) if password and endpoint.kind != "sqlite" else endpoint

    @on(EndpointRejected)
    def _url_rejected(self, message: EndpointRejected) -> None:
        if not self.requests.is_current(message.ticket):
            return
        error = message.error
        self.form(message.side).show_problem(error.title, error.cause, error.remedy)

    # -- testing ----------------------------------------------------------------------------------

    def _fields(self, side: Side) -> EndpointFields:
        form = self.form(side)
        values = form.values()
        fields = EndpointFields(**values, extra=dict(self.wizard.fields(side).extra))
        self.wizard.remember_password[side] = form.remember
        setattr(self.wizard, f"{side}_fields", fields)
        return fields

    @on(EndpointForm.TestRequested)
    def _test_requested(self, event: EndpointForm.TestRequested) -> None:
        self.test(event.form.side)  # type: ignore[arg-type]

    def action_test_both(self) -> None:
        for side in SIDES:
            self.test(side)

    def test(self, side: Side) -> None:
        foreign = self._foreign_endpoint() if side == "source" else None
        if foreign is not None:
            self._tested[side] = dict(self._fields(side).params())
            self.form(side).show_result("Reading the source's tables…")
            self._test_foreign(self.requests.start(f"test-{side}"), foreign)
            return
        inputs = SideInputs.of(side, self._fields(side), self.form(side).remember)
        self.form(side).show_result("Connecting…")
        self._tested[side] = dict(inputs.params)
        ticket = self.requests.start(f"test-{side}")
        if side == "source":
            self._test_source(ticket, inputs)
        else:
            self._test_target(ticket, inputs)

    # Two decorated methods, so a slow source never cancels the target's test (exclusive per group).
    @work(thread=True, exit_on_error=False, exclusive=True, group="test-source", description="Testing the source")
    def _test_source(self, ticket: Ticket, inputs: SideInputs) -> None:
        self._probe(ticket, inputs)

    @work(thread=True, exit_on_error=False, exclusive=True, group="test-target", description="Testing the target")
    def _test_target(self, ticket: Ticket, inputs: SideInputs) -> None:
        self._probe(ticket, inputs)

    @work(thread=True, exit_on_error=False, exclusive=True, group="test-source",
          description="Listing the source's tables")
    def _test_foreign(self, ticket: Ticket, endpoint: ForeignEndpoint) -> None:
        try:
            tables, capture = self.services.foreign_source_tables(endpoint)
        except PgtideError as exc:
            self.post_message(ServerProbeFailed(ticket, "source", exc))
            return
        self.post_message(ForeignSourceTested(ticket, endpoint, tables, capture))

    @on(ForeignSourceTested)
    def _foreign_tested(self, message: ForeignSourceTested) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.wizard.foreign_tables = message.tables
        self.wizard.foreign_capture = message.capture
        show_foreign_test(self.form("source"), message.endpoint, message.tables, message.capture)

    def _probe(self, ticket: Ticket, inputs: SideInputs) -> None:
        side = inputs.side
        try:
            endpoint = self.services.parse_endpoint("", **inputs.params)
            info = self.services.probe(endpoint)
        except PgtideError as exc:
            self.post_message(ServerProbeFailed(ticket, side, exc))
            return
        self.post_message(ServerProbed(ticket, side, endpoint, info))
        if inputs.remember and inputs.password:
            self._store_password(side, endpoint, inputs.password)

    def _store_password(self, side: Side, endpoint: Endpoint, password: str) -> None:
        available, reason = self.services.keyring_status()
        if not available:
            self.post_message(PasswordRemembered(side, False, f"Not stored: {reason}. {self.services.pgpass_remedy()}"))
            return
        try:
            self.services.remember_password(endpoint, password)
        except PgtideError as exc:
            self.post_message(PasswordRemembered(side, False, f"Not stored: {exc.cause}. {exc.remedy}"))
            return
        self.post_message(PasswordRemembered(side, True, f"Password for {endpoint.identity} kept in the OS keyring."))

    @on(ServerProbed)
    def _probed(self, message: ServerProbed) -> None:
        # A test of what the form held before the last Test: its verdict is about another server.
        if not self.requests.is_current(message.ticket):
            return
        self.wizard.server_info[message.side] = message.info
        self.form(message.side).show_ok(*server_lines(message.info, message.side))

    @on(ServerProbeFailed)
    def _probe_failed(self, message: ServerProbeFailed) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.wizard.server_info.pop(message.side, None)
        error = message.error
        self.form(message.side).show_problem(error.title, error.cause, error.remedy)

    @on(PasswordRemembered)
    def _password_remembered(self, message: PasswordRemembered) -> None:
        self.notify(message.explanation, severity="information" if message.stored else "warning", timeout=6)

    # -- moving on ------------------------------------------------------------------------------------

    def action_next(self) -> None:
        foreign = self._foreign_endpoint()
        if foreign is not None:
            target = SideInputs.of("target", self._fields("target"), self.form("target").remember)
            tests = {side: self.requests.start(f"test-{side}") for side in SIDES}
            self._tested["source"] = dict(self._fields("source").params())
            self._tested["target"] = dict(target.params)
            self.form("source").show_result("Reading the source's tables…")
            self.form("target").show_result("Connecting…")
            self._prepare_foreign(self.requests.start("next"), tests, foreign, target)
            return
        inputs = tuple(SideInputs.of(side, self._fields(side), self.form(side).remember) for side in SIDES)
        # Each side's test from Next is that side's newest test: its mark lands in the form.
        tests = {side: self.requests.start(f"test-{side}") for side in SIDES}
        for side_inputs in inputs:
            self._tested[side_inputs.side] = dict(side_inputs.params)
            self.form(side_inputs.side).show_result("Connecting…")
        self._prepare(self.requests.start("next"), tests, inputs)

    @work(thread=True, exit_on_error=False, exclusive=True, group="next", description="Testing both connections")
    def _prepare(self, ticket: Ticket, tests: dict[Side, Ticket], inputs: tuple[SideInputs, ...]) -> None:
        # Both servers are tested again: a mark from before could be about other fields, or a
        # server that has gone away since; moving on with a failed side only fails later, worse.
        endpoints: dict[Side, Endpoint] = {}
        failed: list[str] = []
        for side_inputs in inputs:
            side = side_inputs.side
            try:
                endpoint = self.services.parse_endpoint("", **side_inputs.params)
                info = self.services.probe(endpoint)
            except PgtideError as exc:
                self.post_message(ServerProbeFailed(tests[side], side, exc))
                failed.append(f"the {side} ({exc.title})")
                continue
            endpoints[side] = endpoint
            self.post_message(ServerProbed(tests[side], side, endpoint, info))
        if failed:
            self.post_message(NextBlocked(ticket, f"Next needs both servers to answer: {' and '.join(failed)} "
                                                  "did not. What happened and how to fix it is under the form."))
            return
        for side_inputs in inputs:
            if side_inputs.remember and side_inputs.password:
                self._store_password(side_inputs.side, endpoints[side_inputs.side], side_inputs.password)
        self.post_message(EndpointsReady(ticket, endpoints["source"], endpoints["target"]))

    @work(thread=True, exit_on_error=False, exclusive=True, group="next", description="Testing both sides")
    def _prepare_foreign(self, ticket: Ticket, tests: dict[Side, Ticket], source: ForeignEndpoint,
                         target_inputs: SideInputs) -> None:
        failed: list[str] = []
        try:
            tables, capture = self.services.foreign_source_tables(source)
            self.post_message(ForeignSourceTested(tests["source"], source, tables, capture))
        except PgtideError as exc:
            self.post_message(ServerProbeFailed(tests["source"], "source", exc))
            failed.append(f"the source ({exc.title})")
        target: Endpoint | None = None
        try:
            target = self.services.parse_endpoint("", **target_inputs.params)
            self.post_message(ServerProbed(tests["target"], "target", target, self.services.probe(target)))
        except PgtideError as exc:
            self.post_message(ServerProbeFailed(tests["target"], "target", exc))
            failed.append(f"the target ({exc.title})")
        if failed or target is None:
            self.post_message(NextBlocked(ticket, f"Next needs both sides to answer: {' and '.join(failed)} "
                                                  "did not. What happened and how to fix it is under the form."))
            return
        if target_inputs.remember and target_inputs.password:
            self._store_password("target", target, target_inputs.password)
        self.post_message(ForeignSourceReady(ticket, source, target))

    @on(ForeignSourceReady)
    def _foreign_ready(self, message: ForeignSourceReady) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.wizard.target = message.target
        tables = self.wizard.foreign_tables or []
        previous = self.wizard.foreign
        if previous is not None and previous.source.identity == message.source.identity \
                and previous.target.identity == message.target.identity:
            # Back from Pick and on again: the choices stay; the catalog and password are the new ones.
            previous.source, previous.target, previous.tables = message.source, message.target, list(tables)
            previous.capture = self.wizard.foreign_capture
            previous.picked &= {t.name for t in tables}
        else:
            self.wizard.foreign = ForeignChoices.start(message.source, message.target, tables,
                                                       self.wizard.foreign_capture)
        self.pgtide.show_foreign_pick()

    @on(NextBlocked)
    def _next_blocked(self, message: NextBlocked) -> None:
        if self.requests.is_current(message.ticket):
            self.notify(message.reason, title="Not moving on", severity="warning", timeout=10)

    @on(EndpointsReady)
    def _ready(self, message: EndpointsReady) -> None:
        # Next pressed twice: only the last press moves on, once (not two Pick screens).
        if not self.requests.is_current(message.ticket):
            return
        self.wizard.source = message.source
        self.wizard.target = message.target
        self.pgtide.show_pick()


