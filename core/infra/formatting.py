"""How pgtide writes sizes, durations, counts and text tables — the CLI and the app alike.

Pure functions with no imports of psycopg or textual, so the app can use them at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence


def human_bytes(size: float | None, *, missing: str = "-") -> str:
    """1024-based sizes with PostgreSQL's unit names (``pg_size_pretty`` writes kB, MB, ...)."""
    if size is None:
        return missing
    amount = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(amount) < 1024 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"


def human_seconds(seconds: float | None, *, missing: str = "-") -> str:
    """A duration a person reads at a glance: "<1s", "42s", "3m 05s", "2h 10m"."""
    if seconds is None:
        return missing
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return "<1s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def human_count(count: int | None, *, approximate: bool = False, missing: str = "?") -> str:
    if count is None or count < 0:
        return missing
    text = f"{count:,}"
    return f"~{text}" if approximate else text


def text_table(rows: Sequence[Sequence[object]], headers: Sequence[str], *, rule: bool = True) -> str:
    """A plain aligned text table (no box drawing: it must read well in CI logs)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024**2, "m": 1024**2, "gb": 1024**3, "g": 1024**3}


def parse_size(text: str) -> int:
    """``16MB``, ``512 kB``, ``1g`` or plain bytes (binary units, as PostgreSQL reads them)."""
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgb")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (e.g. 16MB, 512kB, 1GB)") from None
    if unit not in _SIZE_UNITS or value < 0 or value != value or value == float("inf"):
        raise ValueError(f"{text!r} is not a size (e.g. 16MB, 512kB, 1GB)")
    return int(value * _SIZE_UNITS[unit])


def read_quoted(text: str, start: int = 0) -> tuple[str, int] | None:
    """The double-quoted name opening at ``text[start]`` (``""`` stands for one quote) and the
    index just past its closing quote; None when it is never closed."""
    name: list[str] = []
    end = start + 1
    while end < len(text):
        if text[end] == '"':
            if text[end + 1:end + 2] == '"':
                name.append('"')
                end += 2
                continue
            return "".join(name), end + 1
        name.append(text[end])
        end += 1
    return None
