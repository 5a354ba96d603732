"""Small renderers shared by the widgets: text progress bars, status marks; sizes and durations
as core.infra.formatting writes them for the CLI too."""

from __future__ import annotations

from rich.text import Text

# One formatting module for the CLI and the app (pure: it imports neither psycopg nor textual).
from ..core.infra.formatting import human_bytes as _human_bytes
from ..core.infra.formatting import human_count as human_count  # re-exported: the screens import it from here
from ..core.infra.formatting import human_seconds as _human_seconds

#: Marks for ok / warning / error, with the style that colours them.
STATUS_MARKS: dict[str, tuple[str, str]] = {
    "ok": ("✔", "green"),
    "warning": ("▲", "yellow"),
    "error": ("✖", "red"),
    "running": ("●", "cyan"),
    "pending": ("○", "dim"),
    "done": ("✔", "green"),
    "failed": ("✖", "red"),
}


def human_bytes(size: float | None) -> str:
    return _human_bytes(size, missing="?")


def human_seconds(seconds: float | None) -> str:
    return _human_seconds(seconds, missing="?")


def mark(status: str) -> Text:
    symbol, style = STATUS_MARKS.get(status, ("?", ""))
    # assemble, not Text(symbol, style=...): that style would colour whatever is appended later
    return Text.assemble((symbol, style))


def progress_text(fraction: float, width: int = 16) -> Text:
    """A progress bar as text, for table cells (one widget per row does not scale to thousands)."""
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    bar = Text.assemble(("█" * filled, "green" if fraction >= 1.0 else "cyan"))
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {fraction:4.0%}")
    return bar
