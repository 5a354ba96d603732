"""Helpers for the app's tests: settling a Pilot, waiting for a condition, a test-friendly app."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from pgtide.app.tui import PgtideApp

#: Every snapshot is taken at this size.
SNAPSHOT_SIZE = (120, 34)


async def settle(pilot: Pilot[Any]) -> None:
    """Let every worker finish and every message land (twice: a finished worker may start another)."""
    for _ in range(2):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], *, timeout: float = 60.0,
                     what: str = "condition") -> None:
    """Pause the app until ``condition()`` holds (the app keeps running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.1)


def make_app(**kwargs: Any) -> PgtideApp:
    kwargs.setdefault("cursor_blink", False)
    return PgtideApp(**kwargs)



async def open_pick(pilot: Pilot[Any], state: Any) -> PgtideApp:
    """Open the wizard with ``state`` and go straight to the Pick screen, settled."""
    app = pilot.app
    assert isinstance(app, PgtideApp)
    await settle(pilot)
    app.open_wizard(state, ())
    await settle(pilot)
    app.show_pick()
    await settle(pilot)
    return app
