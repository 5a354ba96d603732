"""The validate checklist: one line per check (ok / warning / error), the remedy under problems."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from .formatting import mark


def check_text(status: str, name: str, observed: str, remedy: str = "", database: str | None = None) -> Text:
    text = mark(status)
    text.append(" ")
    text.append(name, style="bold" if status != "ok" else "")
    if database:
        text.append(f" [{database}]", style="dim")
    if observed:
        text.append(": ")
        text.append(observed, style="" if status != "ok" else "dim")
    if remedy and status != "ok":
        text.append("\n  → ", style="bold yellow" if status == "warning" else "bold red")
        text.append(remedy)
    return text


class CheckList(VerticalScroll):
    """Checks appear as they arrive; problems sort first once the list is complete."""

    DEFAULT_CSS = """
    CheckList { height: 1fr; }
    CheckList > Static { height: auto; }
    CheckList > .check-warning { margin-top: 0; }
    """

    def clear_checks(self) -> None:
        self.remove_children()

    def add_check(self, status: str, name: str, observed: str, remedy: str = "", database: str | None = None) -> None:
        self.mount(Static(check_text(status, name, observed, remedy, database), classes=f"check-{status}",
                          markup=False))

    def show_checks(self, checks: Sequence[tuple[str, str, str, str, str | None]]) -> None:
        """Replace the list: errors first, then warnings, then the checks that passed."""
        order = {"error": 0, "warning": 1, "ok": 2}
        self.remove_children()
        self.mount_all(
            Static(check_text(*check), classes=f"check-{check[0]}", markup=False)
            for check in sorted(checks, key=lambda c: order.get(c[0], 3))
        )
