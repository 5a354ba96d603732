"""The app's modal dialogs: the one error modal, confirmations (yes/no, or typed), a name prompt, help.

The error modal shows exactly what a core error carries (title, cause, remedy) and nothing
else: no traceback, no exception repr. Everything it shows can be copied to the clipboard.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ErrorModal(ModalScreen[None]):
    """A core error: its title, the cause in one line, the remedy. ``c`` copies all three."""

    DEFAULT_CSS = """
    ErrorModal { align: center middle; }
    ErrorModal > Vertical {
        width: 84; max-width: 90%; height: auto; max-height: 90%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ErrorModal #error-title { text-style: bold; color: $error; margin-bottom: 1; }
    ErrorModal .error-label { color: $text-muted; text-style: bold; }
    ErrorModal #error-cause, ErrorModal #error-remedy { margin-bottom: 1; }
    ErrorModal Horizontal { height: auto; align-horizontal: right; }
    ErrorModal Button { margin-left: 1; }
    """

    BINDINGS = [
        Binding("escape,enter", "dismiss_error", "Close"),
        Binding("c", "copy_error", "Copy"),
    ]

    def __init__(self, title: str, cause: str, remedy: str = "") -> None:
        super().__init__()
        self.error_title = title
        self.cause = cause
        self.remedy = remedy

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.error_title, id="error-title", markup=False)
            yield Label("What happened", classes="error-label")
            yield Static(self.cause, id="error-cause", markup=False)
            if self.remedy:
                yield Label("How to fix it", classes="error-label")
                yield Static(self.remedy, id="error-remedy", markup=False)
            with Horizontal():
                yield Button("Copy", id="copy-error")
                yield Button("Close", id="close-error", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close-error", Button).focus()

    @property
    def text(self) -> str:
        """The error as plain text, as copied."""
        lines = [self.error_title, self.cause]
        if self.remedy:
            lines.append("Fix: " + self.remedy)
        return "\n".join(lines)

    def action_copy_error(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Error copied to the clipboard", timeout=3)

    def action_dismiss_error(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#copy-error")
    def _copy(self) -> None:
        self.action_copy_error()

    @on(Button.Pressed, "#close-error")
    def _close(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """A question with a dangerous "yes": ``y`` confirms, ``n``/escape declines."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical {
        width: 70; max-width: 90%; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    ConfirmModal #confirm-title { text-style: bold; margin-bottom: 1; }
    ConfirmModal Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmModal Button { margin-left: 1; }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question_title = title
        self.question = question
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question_title, id="confirm-title", markup=False)
            yield Static(self.question, markup=False)
            with Horizontal():
                yield Button(self.no_label, id="confirm-no")
                yield Button(self.yes_label, id="confirm-yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)


class NamePrompt(ModalScreen[str | None]):
    """Ask for a name (a profile's); None when cancelled."""

    DEFAULT_CSS = """
    NamePrompt { align: center middle; }
    NamePrompt > Vertical {
        width: 64; max-width: 90%; height: auto; border: thick $primary; background: $surface; padding: 1 2;
    }
    NamePrompt #prompt-title { text-style: bold; margin-bottom: 1; }
    NamePrompt #prompt-hint { color: $text-muted; }
    NamePrompt Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    NamePrompt Button { margin-left: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, *, value: str = "", hint: str = "") -> None:
        super().__init__()
        self.prompt_title = title
        self.initial = value
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt_title, id="prompt-title", markup=False)
            yield Input(self.initial, id="prompt-input")
            if self.hint:
                yield Static(self.hint, id="prompt-hint", markup=False)
            with Horizontal():
                yield Button("Cancel", id="prompt-cancel")
                yield Button("OK", id="prompt-ok", variant="primary")

    def on_mount(self) -> None:
        field = self.query_one("#prompt-input", Input)
        # Apps that take snapshots switch blinking off (a blinking cursor makes them flaky).
        field.cursor_blink = bool(getattr(self.app, "cursor_blink", True))
        field.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#prompt-input")
    @on(Button.Pressed, "#prompt-ok")
    def _ok(self) -> None:
        value = self.query_one("#prompt-input", Input).value.strip()
        self.dismiss(value or None)

    @on(Button.Pressed, "#prompt-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class TypedConfirmModal(ModalScreen[bool]):
    """An irreversible action: the user types ``word`` (a database name) before "yes" is possible.

    ``y`` does nothing here: a key pressed out of habit must not drop a database.
    """

    DEFAULT_CSS = """
    TypedConfirmModal { align: center middle; }
    TypedConfirmModal > VerticalScroll {
        width: 76; max-width: 95%; height: auto; max-height: 95%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    TypedConfirmModal #typed-title { text-style: bold; color: $error; margin-bottom: 1; }
    TypedConfirmModal #typed-prompt { margin-top: 1; text-style: bold; }
    TypedConfirmModal #typed-hint { color: $text-muted; height: auto; }
    TypedConfirmModal Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    TypedConfirmModal Button { margin-left: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: str, word: str, *, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.question_title = title
        self.question = question
        self.word = word
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(self.question_title, id="typed-title", markup=False)
            yield Static(self.question, markup=False)
            yield Label(f"Type {self.word} to confirm:", id="typed-prompt", markup=False)
            yield Input(id="typed-input")
            yield Static("", id="typed-hint", markup=False)
            with Horizontal():
                yield Button(self.no_label, id="typed-no")
                yield Button(self.yes_label, id="typed-yes", variant="error", disabled=True)

    def on_mount(self) -> None:
        field = self.query_one("#typed-input", Input)
        field.cursor_blink = bool(getattr(self.app, "cursor_blink", True))
        field.focus()

    @property
    def matches(self) -> bool:
        return self.query_one("#typed-input", Input).value.strip() == self.word

    @on(Input.Changed, "#typed-input")
    def _typed(self) -> None:
        self.query_one("#typed-yes", Button).disabled = not self.matches

    @on(Input.Submitted, "#typed-input")
    def _submitted(self) -> None:
        if self.matches:
            self.dismiss(True)
        else:
            self.query_one("#typed-hint", Static).update(f"That is not {self.word!r}: nothing was done. "
                                                         "Esc cancels.")

    @on(Button.Pressed, "#typed-yes")
    def _yes(self) -> None:
        if self.matches:
            self.dismiss(True)

    @on(Button.Pressed, "#typed-no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)


class InfoModal(ModalScreen[None]):
    """Something to read before going on (the help of a screen, the demo's servers): Esc, Enter or q close it."""

    DEFAULT_CSS = """
    InfoModal { align: center middle; }
    InfoModal > Vertical {
        width: 96; max-width: 95%; height: auto; max-height: 95%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    InfoModal #info-title { text-style: bold; color: $text-accent; margin-bottom: 1; }
    InfoModal VerticalScroll { height: auto; }
    InfoModal #info-body { height: auto; }
    InfoModal Horizontal { height: 1; align-horizontal: right; }
    InfoModal Button { height: 1; border: none; min-width: 10; }
    """

    BINDINGS = [Binding("escape,enter,q,question_mark,f1", "close", "Close")]

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__()
        self.info_title = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.info_title, id="info-title", markup=False)
            with VerticalScroll(id="info-scroll"):
                yield Static(self.body, id="info-body", markup=False)
            with Horizontal():
                yield Button("Close", id="info-close", variant="primary", compact=True)

    def on_mount(self) -> None:
        self._fit()
        self.query_one("#info-scroll", VerticalScroll).focus()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        # The text scrolls and the Close button stays on screen, whatever the terminal's height:
        # the scroll area gets what the border, the title and the button row leave.
        scroll = self.query_one("#info-scroll", VerticalScroll)
        scroll.styles.max_height = max(3, int(self.size.height * 0.95) - 6)

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#info-close")
    def _close(self) -> None:
        self.dismiss(None)


class ChoiceModal(ModalScreen[str]):
    """A question with several answers, the first one the default (Enter); Esc picks ``cancel``."""

    DEFAULT_CSS = """
    ChoiceModal { align: center middle; }
    ChoiceModal > Vertical {
        width: 76; max-width: 95%; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    ChoiceModal #choice-title { text-style: bold; margin-bottom: 1; }
    ChoiceModal Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ChoiceModal Button { margin-left: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: str, choices: list[tuple[str, str]], *, cancel: str) -> None:
        super().__init__()
        self.question_title = title
        self.question = question
        self.choices = choices
        self.cancel_value = cancel

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question_title, id="choice-title", markup=False)
            yield Static(self.question, markup=False)
            with Horizontal():
                for index, (value, label) in enumerate(self.choices):
                    yield Button(label, id=f"choice-{value}", variant="primary" if index == 0 else "default")

    def on_mount(self) -> None:
        self.query_one(f"#choice-{self.choices[0][0]}", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(self.cancel_value)

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.startswith("choice-"):
            self.dismiss(event.button.id.removeprefix("choice-"))
