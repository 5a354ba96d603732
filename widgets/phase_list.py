"""The phases of a run, one per line with its state: ○ pending, ● running, ✔ done, ✖ failed;
and the index phase's progress in one line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from ..core.infra.events import IndexProgress
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


def index_progress_text(event: IndexProgress, *, database: bool = False, running: bool = True) -> Text:
    """``indexes 3/7 · building orders_pkey (scanning table 42 %)``: the index phase in one line
    (indexes and constraints alike: a primary key is built as its index).

    ``database`` names the database (several are migrated); once the phase is no longer
    ``running`` the line says only how many were built.
    """
    text = Text()
    if database:
        text.append(f"{event.database}: ", style="bold")
    text.append("indexes ", style="bold")
    text.append(f"{event.done}/{event.total}")
    if not running or event.done >= event.total:
        text.append(" built" if event.done >= event.total else " (stopped)", style="dim")
        return text
    activity = f"building {event.current}" if event.current else ("building" if event.building else "")
    details = [(event.phase or "").removeprefix("building index: ")]
    if event.fraction is not None:
        details.append(f"{event.fraction * 100:.0f} %")
    if activity and any(details):
        activity += " (" + " ".join(d for d in details if d) + ")"
    if event.building > 1:
        activity += f" and {event.building - 1} more"
    if activity:
        text.append(" · ")
        text.append(activity, style="dim")
    return text
