"""Small renderers shared by the widgets: sizes, durations, text progress bars, status marks."""

from __future__ import annotations

from rich.text import Text

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
    if size is None:
        return "?"
    # core's formatter, so the CLI and the app print sizes the same way; imported on first use
    # because core.estimate pulls in psycopg, which app start-up must not wait for.
    from ..core.catalog.estimate import human_bytes as core_human_bytes

    return core_human_bytes(size)


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    from ..core.catalog.estimate import human_seconds as core_human_seconds

    return core_human_seconds(seconds)


def human_count(count: int | None, *, approximate: bool = False) -> str:
    if count is None or count < 0:
        return "?"
    text = f"{count:,}"
    return f"~{text}" if approximate else text


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
