"""The validate checklist: one line per check (ok / warning / error), the remedy under problems.

Also the wrapping the Review screen's texts need: a URL longer than its pane breaks after ``?``,
``&`` or ``/`` instead of wherever the line ends (Textual's own wrapping cut
``sslmode=disable`` into ``sslmode=dis`` / ``able``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len, chop_cells
from rich.text import Text
from textual.containers import VerticalScroll
from textual.content import Content
from textual.css.styles import RulesMap
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual
from textual.widgets import Static

from .formatting import mark

#: What rich calls a word: a run of non-space with the spaces after it (and, first, before it).
_WORD = re.compile(r"\s*\S+\s*")
#: The pieces of a word too long for a line: each ends after a run of ``?``, ``&`` or ``/``, so
#: ``postgresql://`` stays whole and so does every ``key=value`` of a query string.
_PIECE = re.compile(r"[^?&/]*(?:[?&/]+|$)")


def separator_breaks(text: str, width: int) -> list[int]:
    """Where to cut one line of ``text`` so each part fits in ``width`` cells.

    Rich's rule (break at spaces; a word that does not fit goes to the next line), except for a
    word longer than a whole line: that one breaks after its URL separators, and is cut inside
    a piece only when the piece itself is longer than a line.
    """
    breaks: list[int] = []
    column = 0
    width = max(width, 1)

    def place(start: int, piece: str) -> None:
        nonlocal column
        length = cell_len(piece.rstrip())
        if width - column >= length:
            column += cell_len(piece)
        elif length <= width:
            if column and start:
                breaks.append(start)
            column = cell_len(piece)
        else:
            position = start
            for index, chunk in enumerate(chop_cells(piece, width)):
                if (index or column) and position:
                    breaks.append(position)
                column = cell_len(chunk)
                position += len(chunk)

    for match in _WORD.finditer(text):
        start, word = match.start(), match.group(0)
        if cell_len(word.rstrip()) <= width or not any(sep in word for sep in "?&/"):
            place(start, word)
            continue
        position = start
        for piece in _PIECE.findall(word):
            if piece:
                place(position, piece)
                position += len(piece)
    return breaks


class SeparatorWrap(Visual):
    """Content wrapped by :func:`separator_breaks` at whatever width it is drawn."""

    def __init__(self, content: Content | Text | str) -> None:
        # A plain string is text, never markup (the Statics that use this are markup=False).
        if isinstance(content, str):
            content = Content(content)
        self.content = content if isinstance(content, Content) else Content.from_rich_text(content)
        self._wrapped: dict[int, tuple[Content, dict[int, str]]] = {}

    def __str__(self) -> str:
        return self.content.plain

    def wrapped(self, width: int) -> tuple[Content, dict[int, str]]:
        """The content cut into lines for ``width``, and {line: what its soft break removed}."""
        if width not in self._wrapped:
            lines: list[Content] = []
            soft: dict[int, str] = {}
            for line in self.content.split("\n", allow_blank=True):
                parts = line.divide(separator_breaks(line.plain, width))
                for part in parts[:-1]:
                    kept = part.rstrip()
                    soft[len(lines)] = part.plain[len(kept.plain):]
                    lines.append(kept)
                lines.append(parts[-1])
            if len(self._wrapped) > 8:  # a few widths (resizes), not one per frame
                self._wrapped.clear()
            self._wrapped[width] = (Content("\n").join(lines), soft)
        return self._wrapped[width]

    def _at(self, rules: RulesMap, width: int) -> Content:
        if rules.get("text_wrap", "wrap") == "nowrap":
            return self.content
        return self.wrapped(width - rules.get("line_pad", 0) * 2)[0]

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        return self._at(options.rules, width).render_strips(width, height, style, options)

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        return self.content.get_optimal_width(rules, container_width)

    def get_minimal_width(self, rules: RulesMap) -> int:
        return self.content.get_minimal_width(rules)

    def get_height(self, rules: RulesMap, width: int) -> int:
        return self._at(rules, width).get_height(rules, width)


class WrapStatic(Static):
    """A Static whose text breaks URLs at their separators; a selection copies them whole."""

    def __init__(self, content: str | Text | Content = "", **kwargs: Any) -> None:
        super().__init__(SeparatorWrap(content), **kwargs)

    def update(self, content: object = "", *, layout: bool = True) -> None:
        if isinstance(content, (str, Text, Content)):
            content = SeparatorWrap(content)
        super().update(content, layout=layout)  # type: ignore[arg-type]

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        visual = self.visual
        if not isinstance(visual, SeparatorWrap):
            return super().get_selection(selection)
        wrapped, soft = visual.wrapped(self.content_size.width)
        # The selection is in drawn lines: a line that ended in a soft break joins the next
        # again, with the spaces the break removed, so a URL is copied in one piece.
        first = selection.start.y if selection.start is not None else 0
        lines = selection.extract(wrapped.plain).split("\n")
        text = lines[0]
        for index, line in enumerate(lines[1:]):
            brk = soft.get(first + index)
            text += ("\n" if brk is None else brk) + line
        return text, "\n"


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


def _check_static(check: tuple[str, str, str, str, str | None]) -> Static:
    return WrapStatic(check_text(*check), classes=f"check-{check[0]}", markup=False)


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
        self.mount(_check_static((status, name, observed, remedy, database)))

    def show_checks(self, checks: Sequence[tuple[str, str, str, str, str | None]]) -> None:
        """Replace the list: errors first, then warnings, then the checks that passed."""
        order = {"error": 0, "warning": 1, "ok": 2}
        self.remove_children()
        self.mount_all(_check_static(check) for check in sorted(checks, key=lambda c: order.get(c[0], 3)))
