"""The phases of a run, one per line with its state: ○ pending, ● running, ✔ done, ✖ failed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from .formatting import mark


class PhaseList(Static):
    DEFAULT_CSS = """
    PhaseList { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)

    def show(self, phases: Sequence[tuple[str, str, str]]) -> None:
        """``phases``: (name, pending/running/done/failed, detail) in order."""
        text = Text()
        for index, (name, status, detail) in enumerate(phases):
            if index:
                text.append("\n")
            text.append_text(mark(status))
            text.append(f" {name:<9}", style="bold" if status == "running" else ("dim" if status == "pending" else ""))
            if detail:
                text.append(" " + detail, style="dim")
        self.update(text)
