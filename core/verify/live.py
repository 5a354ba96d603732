"""Live replication: waiting for the target to apply past a source position, and when a
difference persists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..monitor.poll import (
    ApplyProgress,
    confirmed_flush_lsn,
    current_insert_lsn,
    lsn_reached,
)
from .connections import _Pair
from .events import _check

# -- live replication ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveReplication:
    """The subscription that keeps a target database in step with its source."""

    slot: str
    subscription: str


class _Waiter:
    """Waits until the target has applied the source's WAL up to a position."""

    def __init__(self, pair: _Pair, live: LiveReplication | None, timeout: float, wal_block_size: int) -> None:
        self.pair = pair
        self.live = live
        # Per wait, not per table: a table whose own comparison outlasts the timeout (a hot
        # million-row table) would otherwise find every re-check already out of time, and its
        # in-flight rows would come back as differences with no real lag.
        self.timeout = timeout
        self.block = wal_block_size
        self.timed_out = False
        self.progress = ApplyProgress(pair.target, live.subscription) if live else None

    @property
    def active(self) -> bool:
        return self.live is not None

    def source_position(self) -> int | None:
        return current_insert_lsn(self.pair.source) if self.live else None

    def wait(self, position: int | None) -> bool:
        """True once the target applied past ``position``; False after the deadline."""
        if self.live is None or position is None:
            return True
        if self.timed_out:
            return False
        delay = 0.02
        deadline = time.monotonic() + self.timeout
        while True:
            _check(self.pair.cancel)
            assert self.progress is not None
            if lsn_reached(self.progress.lsn(), position, self.block):
                return True
            if lsn_reached(confirmed_flush_lsn(self.pair.source, self.live.slot), position, self.block):
                return True
            if time.monotonic() >= deadline:
                self.timed_out = True
                return False
            self.pair.cancel.wait(delay)
            delay = min(delay * 1.5, 0.25)



def _persists(before: tuple[Any, Any], now: tuple[Any, Any], absent: Any) -> bool:
    """Two observations, each with the target caught up with the source read: still a difference?

    Missing (on the source both times, on the target neither) and extra (the other way
    round) are real whatever the values did; a differing value is real when neither side
    changed in between — otherwise the row is still being written to and may be in flight.
    """
    (source_before, target_before), (source_now, target_now) = before, now
    if absent not in (source_before, source_now) and target_before == absent and target_now == absent:
        return True
    if source_before == absent and source_now == absent and absent not in (target_before, target_now):
        return True
    return before == now


@dataclass
class _Settled:
    persistent: list[Any]
    changing: list[Any]
