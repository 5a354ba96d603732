"""Connect: the source and target servers, each tested in a worker before moving on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Header, Static

from ..core.infra.errors import PgtideError
from ..widgets.endpoint_form import EndpointForm
from .base import WizardStep
from .messages import (
    EndpointParsed,
    EndpointRejected,
    EndpointsReady,
    KeyringChecked,
    PasswordRemembered,
    ServerProbed,
    ServerProbeFailed,
)
from .state import EndpointFields, Side

if TYPE_CHECKING:
    from ..core.infra.endpoint import Endpoint
    from ..core.catalog.server import ServerInfo

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


class ConnectScreen(WizardStep):
    STEP = "1 Connect"

    BINDINGS = [
        Binding("ctrl+t", "test_both", "Test both"),
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="connect-body"):
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
            if info is not None:
                form.show_ok(*server_lines(info, side))
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
        self.post_message(KeyringChecked(text))

    @on(KeyringChecked)
    def _keyring_checked(self, message: KeyringChecked) -> None:
        self.query_one("#keyring-note", Static).update(message.text)

    # -- URL paste ------------------------------------------------------------------------------

    @on(EndpointForm.UrlEntered)
    def _url_entered(self, event: EndpointForm.UrlEntered) -> None:
        self._parse_url(event.form.side, event.text, event.final)

    @work(thread=True, exit_on_error=False, exclusive=True, group="parse-url", description="Reading a pasted URL")
    def _parse_url(self, side: Side, text: str, final: bool) -> None:
        try:
            endpoint = self.services.parse_endpoint(text)
        except PgtideError as exc:
            if final:
                self.post_message(EndpointRejected(side, exc))
            return
        self.post_message(EndpointParsed(side, EndpointFields.from_params(endpoint.params), endpoint.to_url()))

    @on(EndpointParsed)
    def _url_parsed(self, message: EndpointParsed) -> None:
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

    @on(EndpointRejected)
    def _url_rejected(self, message: EndpointRejected) -> None:
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
        fields = self._fields(side)
        self.form(side).show_result("Connecting…")
        if side == "source":
            self._test_source(fields, self.form(side).remember)
        else:
            self._test_target(fields, self.form(side).remember)

    # Two decorated methods, so a slow source never cancels the target's test (exclusive per group).
    @work(thread=True, exit_on_error=False, exclusive=True, group="test-source", description="Testing the source")
    def _test_source(self, fields: EndpointFields, remember: bool) -> None:
        self._probe("source", fields, remember)

    @work(thread=True, exit_on_error=False, exclusive=True, group="test-target", description="Testing the target")
    def _test_target(self, fields: EndpointFields, remember: bool) -> None:
        self._probe("target", fields, remember)

    def _probe(self, side: Side, fields: EndpointFields, remember: bool) -> None:
        try:
            endpoint = self.services.parse_endpoint("", **fields.params())
            info = self.services.probe(endpoint)
        except PgtideError as exc:
            self.post_message(ServerProbeFailed(side, exc))
            return
        self.post_message(ServerProbed(side, endpoint, info))
        if remember and fields.password:
            self._store_password(side, endpoint, fields.password)

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
        self.wizard.server_info[message.side] = message.info
        self.form(message.side).show_ok(*server_lines(message.info, message.side))

    @on(ServerProbeFailed)
    def _probe_failed(self, message: ServerProbeFailed) -> None:
        self.wizard.server_info.pop(message.side, None)
        error = message.error
        self.form(message.side).show_problem(error.title, error.cause, error.remedy)

    @on(PasswordRemembered)
    def _password_remembered(self, message: PasswordRemembered) -> None:
        self.notify(message.explanation, severity="information" if message.stored else "warning", timeout=6)

    # -- moving on ------------------------------------------------------------------------------------

    def action_next(self) -> None:
        fields = {side: self._fields(side) for side in SIDES}
        remember = {side: self.form(side).remember for side in SIDES}
        self._prepare(fields["source"], fields["target"], remember)

    @work(thread=True, exit_on_error=False, exclusive=True, group="next", description="Checking both connections")
    def _prepare(self, source_fields: EndpointFields, target_fields: EndpointFields, remember: dict[Side, bool]) -> None:
        endpoints: dict[Side, Endpoint] = {}
        for side, fields in (("source", source_fields), ("target", target_fields)):
            try:
                endpoint = self.services.parse_endpoint("", **fields.params())
            except PgtideError as exc:
                self.post_message(ServerProbeFailed(side, exc))  # type: ignore[arg-type]
                return
            endpoints[side] = endpoint  # type: ignore[index]
        for side in SIDES:
            fields = source_fields if side == "source" else target_fields
            if remember[side] and fields.password:
                self._store_password(side, endpoints[side], fields.password)
        self.post_message(EndpointsReady(endpoints["source"], endpoints["target"]))

    @on(EndpointsReady)
    def _ready(self, message: EndpointsReady) -> None:
        self.wizard.source = message.source
        self.wizard.target = message.target
        self.pgtide.show_pick()


