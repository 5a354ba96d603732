"""Verify's progress events and its cancel (core's :class:`Event` and :class:`Cancelled`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..infra.errors import Interrupted
from ..infra.events import Cancelled, CancelToken, Event
from .results import TableResult

# -- progress events ------------------------------------------------------------------------------


class VerifyCancelled(Cancelled, Interrupted):
    """Verify stopped on its cancel token. A :class:`Cancelled` like the rest of core's; also an
    :class:`Interrupted`, so front ends that show pgtide errors and exit codes treat it as before."""

    def __init__(self) -> None:
        Interrupted.__init__(self, "verify was cancelled", "Run it again.")


def _check(token: CancelToken) -> None:
    if token.cancelled:
        raise VerifyCancelled()


@dataclass(frozen=True)
class TableStarted(Event):
    database: str
    schema: str
    name: str
    #: Position of the table in the run (1-based) and the number of tables.
    index: int
    total: int


@dataclass(frozen=True)
class ChunkVerified(Event):
    """One slice of the first pass done on one side (``done`` of ``total``, both sides)."""

    database: str
    schema: str
    name: str
    done: int
    total: int


@dataclass(frozen=True)
class Rechecking(Event):
    """Differences found; re-reading them (bisecting, or waiting for replication)."""

    database: str
    schema: str
    name: str
    buckets: int
    keys: int
    reason: str


@dataclass(frozen=True)
class RangesListed(Event):
    """Key ranges listed from both sides and merged to name the differing keys."""

    database: str
    schema: str
    name: str
    ranges: int
    #: Ranges listed whole because their mismatch was dense (bisecting them would not pay).
    dense: int
    #: Rows that differ in them (counted exactly, even beyond the keys kept).
    differences: int


@dataclass(frozen=True)
class TableVerified(Event):
    result: TableResult


VerifyEvent = TableStarted | ChunkVerified | Rechecking | RangesListed | TableVerified
EventCallback = Callable[[VerifyEvent], None]
