"""Toggles whose state reads without colour: ``[x]``/``[ ]`` boxes, ``(•)``/``( )`` choices.

Textual draws every checkbox as "▐X▌" and every radio button as "▐●▌", on or off, and tells
them apart by colour only: on a monochrome terminal, through a screen reader's text, in a
copied screen or to a colour-blind DBA, a ticked "Drop and recreate" looked like an unticked
one. These draw a different glyph for each state; colour only adds emphasis.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.content import Content
from textual.strip import Strip
from textual.widgets import Checkbox, OptionList, RadioButton, SelectionList
from textual.widgets.option_list import OptionDoesNotExist

TICKED = "[x]"
UNTICKED = "[ ]"
CHOSEN = "(•)"
NOT_CHOSEN = "( )"
#: Between the mark and its label (Textual's own padding is drawn in the label's highlight).
GAP = " "


class TickBox(Checkbox):
    """A checkbox drawn ``[x] label`` when ticked and ``[ ] label`` when not."""

    @property
    def _button(self) -> Content:
        if self.value:
            return Content.assemble((TICKED, "bold $success"), GAP)
        return Content.assemble((UNTICKED, "$text-muted"), GAP)


class Choice(RadioButton):
    """A radio button drawn ``(•) label`` when chosen and ``( ) label`` when not."""

    @property
    def _button(self) -> Content:
        if self.value:
            return Content.assemble((CHOSEN, "bold $success"), GAP)
        return Content.assemble((NOT_CHOSEN, "$text-muted"), GAP)


class TickList(SelectionList[str]):
    """A SelectionList whose lines start with ``[x]`` or ``[ ]`` (same width as Textual's "▐X▌")."""

    def render_line(self, y: int) -> Strip:
        # OptionList's line (the prompt) without SelectionList's coloured button; ours goes in front.
        line = OptionList.render_line(self, y)
        _, scroll_y = self.scroll_offset
        index = scroll_y + y
        try:
            selection = self.get_option_at_index(index)
        except OptionDoesNotExist:
            return line
        underlying = next(iter(line)).style or self.rich_style
        selected = selection.value in self._selected
        # The "option" meta lets a click on the mark toggle the line, as on Textual's button.
        mark_style = underlying + Style(bold=selected, meta={"option": index})
        return Strip([Segment(TICKED if selected else UNTICKED, mark_style), Segment(" ", underlying), *line])
