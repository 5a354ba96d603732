"""Review in a narrow pane: a URL wraps after ``?``, ``&`` or ``/``, never inside a ``key=value``.

Textual's own wrapping cut a URL wherever the line ended (``sslmode=dis`` / ``able``); the
Review's plan and checks now break a too-long URL at its separators. Checked on what the
widgets really draw at 80x24 and 120x34.
"""

from __future__ import annotations

import re

import pytest
from textual.geometry import Region
from textual.selection import Selection
from textual.widget import Widget
from tui_fakes import FakeServices, wizard_state
from tui_support import make_app, open_pick, settle

from pgtide.core.engine.validate import Report
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.events import Emit
from pgtide.core.model.plan import Plan
from pgtide.screens.review import ReviewScreen
from pgtide.widgets.check_list import SeparatorWrap, WrapStatic, separator_breaks

SOURCE = ("postgresql://app@old-db.example.internal:5432/shop?sslmode=disable&target_session_attrs=read-write"
          "&gssencmode=disable")
TARGET = "postgresql://app@new-db.example.internal:5432/postgres?sslmode=require&target_session_attrs=primary"


class UrlCheckServices(FakeServices):
    """validate also reports a warning whose text holds the source URL (as a connect failure's does)."""

    def validate(self, plan: Plan, emit: Emit) -> Report:
        report = super().validate(plan, emit)
        from pgtide.core.engine.validate import Check

        check = Check("subscription connection", "warning", f"the target connects to {plan.source.redacted()}",
                      "Give the target server a .pgpass entry for that host and port.", database="shop")
        return Report([check, *report.checks], report.scope)


def drawn_lines(widget: Widget) -> list[str]:
    width, height = widget.size
    return ["".join(segment.text for segment in strip).rstrip()
            for strip in widget.render_lines(Region(0, 0, width, height))]


def query_tokens(url: str) -> list[str]:
    return url.split("?", 1)[1].split("&")


@pytest.mark.parametrize("size", [(80, 24), (120, 34)], ids=lambda size: f"{size[0]}x{size[1]}")
async def test_review_never_splits_a_key_value_of_a_url(size: tuple[int, int]) -> None:
    app = make_app(services=UrlCheckServices(), poll_seconds=3600)
    async with app.run_test(size=size) as pilot:
        state = wizard_state()
        state.source, state.target = Endpoint.parse(SOURCE, env={}), Endpoint.parse(TARGET, env={})
        shown_source, shown_target = state.source.redacted(), state.target.redacted()
        assert "sslmode=disable" in shown_source and "target_session_attrs=primary" in shown_target
        await open_pick(pilot, state)
        app.show_filters()
        await settle(pilot)
        app.show_review()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen)

        plan_words = screen.query_one("#plan-words", WrapStatic)
        check = next(w for w in screen.query("#checks WrapStatic") if "subscription connection" in str(w.visual))
        for widget, urls in ((plan_words, (shown_source, shown_target)), (check, (shown_source,))):
            lines = drawn_lines(widget)
            # The pane is narrower than the URL: it has to wrap, so this proves something.
            assert widget.size.width < len(shown_source), widget.size
            assert not any(shown_source in line for line in lines)
            for url in urls:
                for token in query_tokens(url):
                    assert any(token in line for line in lines), (token, lines)
                # Broken only between its pieces: the drawn lines, joined, give the URL back.
                assert url in "".join(lines)
            # A selection copies the text as Textual copies unwrapped text: without the breaks
            # the wrapping put in.
            everything = Selection(None, None)
            selected = widget.get_selection(everything)
            assert selected is not None and selected[0] == everything.extract(str(widget.visual))


@pytest.mark.parametrize("width", [20, 33, 47, 60, 74])
def test_separator_breaks_keep_every_piece_that_fits_whole(width: int) -> None:
    text = f"From  {SOURCE} and then some words"
    cuts = separator_breaks(text, width)
    lines = [text[a:b].rstrip() for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert all(len(line) <= width for line in lines), lines
    for token in query_tokens(SOURCE):
        if len(token) + 1 <= width:  # the token and its '&' fit on a line: never cut
            assert any(token in line for line in lines), (token, lines)
    # Ordinary words wrap as before: at spaces, whole.
    assert "words" in lines[-1] and not re.search(r"\bwor$", lines[-2])


def test_a_piece_longer_than_the_line_is_still_cut_to_fit() -> None:
    text = "x" * 30 + "/y"
    cuts = separator_breaks(text, 10)
    assert cuts == [10, 20, 30]


def test_plain_strings_are_text_not_markup() -> None:
    assert SeparatorWrap("[bold]not markup[/]").content.plain == "[bold]not markup[/]"
