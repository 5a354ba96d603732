"""One server's connection form: paste a URL or fill the fields; the password is always masked.

The form only collects and shows; parsing, testing and storing passwords happen in the
screen's workers, which the form asks for with messages. A pasted URL that carries a
password has it moved into the masked field and removed from the URL box at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from .toggles import TickBox

SSL_CHOICES: Sequence[tuple[str, str]] = (
    ("libpq default", ""),
    ("disable", "disable"),
    ("allow", "allow"),
    ("prefer", "prefer"),
    ("require", "require"),
    ("verify-ca", "verify-ca"),
    ("verify-full", "verify-full"),
)

FIELD_NAMES = ("host", "port", "dbname", "user", "password")


class EndpointForm(Vertical):
    """URL box, host/port/database/user/password/sslmode, "remember password", "Test connection"."""

    DEFAULT_CSS = """
    EndpointForm { height: auto; border: round $primary-darken-1; padding: 0 1; }
    EndpointForm:focus-within { border: round $primary; }
    EndpointForm > Grid { grid-size: 4; grid-columns: 10 1fr 6 1fr; grid-rows: 1; grid-gutter: 1 1; height: auto; }
    EndpointForm Label { width: 100%; text-align: right; color: $text-muted; }
    EndpointForm .wide { column-span: 3; }
    EndpointForm > Horizontal { height: 1; margin-top: 1; }
    EndpointForm TickBox { width: 1fr; border: none; padding: 0; height: 1; }
    EndpointForm .endpoint-result { height: auto; min-height: 3; margin-top: 1; }
    """

    class UrlEntered(Message):
        """The URL box changed (``final`` when Enter was pressed): parse it into the fields."""

        def __init__(self, form: EndpointForm, text: str, final: bool) -> None:
            super().__init__()
            self.form = form
            self.text = text
            self.final = final

        @property
        def control(self) -> EndpointForm:
            return self.form

    class Edited(Message):
        """A field was changed by the user: the last test no longer speaks of these fields."""

        def __init__(self, form: EndpointForm) -> None:
            super().__init__()
            self.form = form

        @property
        def control(self) -> EndpointForm:
            return self.form

    class TestRequested(Message):
        def __init__(self, form: EndpointForm) -> None:
            super().__init__()
            self.form = form

        @property
        def control(self) -> EndpointForm:
            return self.form

    def __init__(self, side: str, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.side = side
        self.border_title = title
        self._loading = False
        #: The fields as last loaded: their own change events (which come later) are no edit.
        #: None until the first load: the events of the empty fields being composed are none either.
        self._loaded: dict[str, str] | None = None

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label("URL")
            yield Input(placeholder="paste postgresql://user@host:5432/db to fill the fields", id="url",
                        classes="wide", compact=True)
            yield Label("Host")
            yield Input(placeholder="localhost", id="host", compact=True)
            yield Label("Port")
            yield Input(placeholder="5432", id="port", compact=True, restrict=r"[0-9,]*")
            yield Label("Database")
            yield Input(placeholder="(user name)", id="dbname", compact=True)
            yield Label("User")
            yield Input(placeholder="(login name)", id="user", compact=True)
            yield Label("Password")
            yield Input(placeholder="(or .pgpass)", id="password", password=True, compact=True)
            yield Label("SSL")
            yield Select(SSL_CHOICES, value="", allow_blank=False, id="sslmode", compact=True)
        with Horizontal():
            yield TickBox("Remember password", id="remember", compact=True)
            yield Button("Test connection", id="test", compact=True, variant="primary")
        yield Static("", classes="endpoint-result", markup=False)

    # -- values ----------------------------------------------------------------------------

    def value_of(self, name: str) -> str:
        if name == "sslmode":
            value = self.query_one("#sslmode", Select).value
            return value if isinstance(value, str) else ""
        return self.query_one(f"#{name}", Input).value

    def values(self) -> dict[str, str]:
        return {name: self.value_of(name) for name in (*FIELD_NAMES, "sslmode")}

    def load(self, values: dict[str, str], *, url: str | None = None) -> None:
        """Fill the fields (and the URL box) without asking for a new parse."""
        self._loading = True
        try:
            for name in FIELD_NAMES:
                if name in values:
                    self.query_one(f"#{name}", Input).value = values[name]
            ssl = values.get("sslmode", "")
            self.query_one("#sslmode", Select).value = ssl if ssl in {v for _, v in SSL_CHOICES} else ""
            if url is not None:
                self.query_one("#url", Input).value = url
            self._loaded = self.values()
        finally:
            self.call_after_refresh(self._done_loading)

    def _done_loading(self) -> None:
        self._loading = False

    @property
    def remember(self) -> bool:
        box = self.query_one("#remember", TickBox)
        return box.value and not box.disabled

    @remember.setter
    def remember(self, value: bool) -> None:
        self.query_one("#remember", TickBox).value = value

    def offer_remember(self, available: bool, *, reason: str = "no OS keyring") -> None:
        """Without an OS keyring, "Remember password" is shown off and unavailable, not offered in vain."""
        box = self.query_one("#remember", TickBox)
        box.disabled = not available
        if not available:
            box.value = False
            box.label = f"Remember password ({reason})"
        else:
            box.label = "Remember password"

    # -- showing results ---------------------------------------------------------------------

    def show_result(self, text: Text | str) -> None:
        self.query_one(".endpoint-result", Static).update(text)

    def show_ok(self, headline: str, details: Sequence[str] = ()) -> None:
        text = Text.assemble(("✔ ", "green"))
        text.append(headline, style="bold")
        for line in details:
            text.append("\n  " + line)
        self.show_result(text)

    def show_problem(self, title: str, cause: str, remedy: str = "", *, warning: bool = False) -> None:
        text = Text.assemble(("▲ " if warning else "✖ ", "yellow" if warning else "red"))
        text.append(title, style="bold")
        text.append("\n  " + cause)
        if remedy:
            text.append("\n  Fix: ", style="bold")
            text.append(remedy)
        self.show_result(text)

    # -- events ------------------------------------------------------------------------------

    @on(Input.Changed, "#url")
    def _url_changed(self, event: Input.Changed) -> None:
        event.stop()
        if not self._loading and event.value.strip():
            self.post_message(self.UrlEntered(self, event.value, final=False))

    @on(Input.Changed, "#host,#port,#dbname,#user,#password")
    @on(Select.Changed, "#sslmode")
    def _field_changed(self, event: Input.Changed | Select.Changed) -> None:
        event.stop()
        if not self._loading and self._loaded is not None and self.values() != self._loaded:
            self._loaded = {}
            self.mark_untested()
            self.post_message(self.Edited(self))

    def mark_untested(self) -> None:
        self.show_result(Text("not tested since the last change: Test connection (or Next) tests it",
                              style="dim"))

    @on(Input.Submitted, "#url")
    def _url_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.UrlEntered(self, event.value, final=True))

    @on(Button.Pressed, "#test")
    def _test(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.TestRequested(self))
