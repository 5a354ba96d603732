"""Typed events: how core reports progress. Core never prints.

The CLI renders events as lines, progress bars or JSON; the TUI turns them into messages.
High-rate events (:class:`TableProgress`, :class:`IndexProgress`) are *replaceable*: a consumer
that falls behind may keep only the newest one per key (Textual's ``Message.can_replace``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Event:
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Log(Event):
    level: Level
    text: str
    database: str | None = None


@dataclass(frozen=True)
class PhaseStarted(Event):
    database: str | None
    phase: str


@dataclass(frozen=True)
class PhaseFinished(Event):
    database: str | None
    phase: str
    seconds: float


@dataclass(frozen=True)
class TableProgress(Event):
    """Replaceable: only the newest per (database, schema, table) matters."""

    database: str
    schema: str
    table: str
    bytes_done: int
    rows_done: int
    bytes_total: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.database, self.schema, self.table)


@dataclass(frozen=True)
class TableCopied(Event):
    database: str
    schema: str
    table: str
    rows: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class IndexProgress(Event):
    """The post-data restore of one database: indexes and constraints built so far.

    Replaceable: only the newest per database matters. ``done`` of ``total`` objects exist;
    ``current`` names one being built now (None between two, or when the server does not
    say), ``phase`` is what the server reports for it (``building index: scanning table``),
    and the block and tuple counts are that phase's (0 of 0 when it reports none).
    ``building`` is how many are built at once (the restore runs several jobs).
    """

    database: str
    done: int
    total: int
    current: str | None = None
    phase: str | None = None
    blocks_done: int = 0
    blocks_total: int = 0
    tuples_done: int = 0
    tuples_total: int = 0
    building: int = 0

    @property
    def key(self) -> str:
        return self.database

    @property
    def fraction(self) -> float | None:
        """How far ``current`` is through its phase, from blocks or else tuples (None: unknown)."""
        if self.blocks_total > 0:
            return min(1.0, self.blocks_done / self.blocks_total)
        if self.tuples_total > 0:
            return min(1.0, self.tuples_done / self.tuples_total)
        return None


@dataclass(frozen=True)
class CheckReported(Event):
    name: str
    status: Literal["ok", "warning", "error"]
    observed: str
    remedy: str
    database: str | None = None


Emit = Callable[[Event], None]


def discard(event: Event) -> None:
    """An emitter for callers that do not care."""


class Cancelled(Exception):
    """Raised inside core when the caller's cancel token is set."""


class CancelToken:
    """Set from any thread (a UI's Cancel button, a signal handler); checked between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    @property
    def event(self) -> threading.Event:
        """The flag itself, for loops that wait on a threading.Event (a change stream's stop)."""
        return self._event

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if cancelled meanwhile."""
        return self._event.wait(seconds)
