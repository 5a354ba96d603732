"""Helpers for the app's tests: settling a Pilot, waiting for a condition, a test-friendly app."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from textual.pilot import Pilot

from pgtide.app.tui import PgtideApp

#: The size of the Pilot tests; every snapshot is taken at each of SNAPSHOT_SIZES.
SNAPSHOT_SIZE = (120, 34)
#: The smallest terminal the app supports, the usual one, a big one.
SNAPSHOT_SIZES = ((80, 24), (120, 34), (160, 48))
#: The wall clock of a test app: times of day on screen must not move.
FIXED_WALL_CLOCK = datetime(2026, 3, 14, 9, 26, 53)


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
    app = PgtideApp(**kwargs)
    app.wall_clock = lambda: FIXED_WALL_CLOCK
    return app



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
