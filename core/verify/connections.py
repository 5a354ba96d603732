"""Verify's sessions: a pinned, read-only connection to each side, reads run ahead on threads,
snapshots shared.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import struct
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.events import CancelToken
from .shapes import CANONICAL_SETTINGS

log = logging.getLogger("pgtide.verify")


T = TypeVar("T")

#: Settings for a long read-only scan (per session, never global).
_SESSION_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "statement_timeout": "0",
        "idle_in_transaction_session_timeout": "0",
        "lock_timeout": "30s",
        "work_mem": "64MB",
        # JIT compiles each slice's query again: seconds lost on a large table.
        "jit": "off",
        # Bucket results are tiny: hash them, never sort the rows.
        "enable_sort": "off",
    }
)


# -- connections: one pair per worker ---------------------------------------------------------------


class _Pair:
    """A connection to each side of one database, and a thread to run the target's reads."""

    def __init__(self, source: Endpoint, target: Endpoint, cancel: CancelToken) -> None:
        self.endpoints = (source, target)
        #: Extra sessions sharing a side's snapshot (see :meth:`sharing_snapshot`), interrupted with it.
        self.helpers: list[psycopg.Connection[Any]] = []
        self.source = _open(source)
        try:
            self.target = _open(target)
        except BaseException:
            self.source.close()
            raise
        # Four: listing key ranges reads both sides ahead and looks rows up while this thread
        # compares, and a range that must then be compared row by row reads the source ahead.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pgtide-verify-read")
        self.cancel = cancel

    def both(self, on_source: Callable[[psycopg.Connection[Any]], T],
             on_target: Callable[[psycopg.Connection[Any]], Any]) -> tuple[T, Any]:
        """Run the two reads at the same time; the source's on this thread."""
        future: Future[Any] = self.executor.submit(on_target, self.target)
        try:
            first = on_source(self.source)
        except BaseException:
            _cancel_quietly(self.target)
            try:
                future.result()
            except BaseException as exc:
                log.debug("target read failed after the source read did: %s", exc)
            raise
        return first, future.result()

    def interrupt(self) -> None:
        _cancel_quietly(self.source)
        _cancel_quietly(self.target)
        for helper in list(self.helpers):
            _cancel_quietly(helper)

    @contextlib.contextmanager
    def sharing_snapshot(self, side: Literal["source", "target"]) -> Iterator[psycopg.Connection[Any]]:
        """A second session on ``side`` that sees exactly what its connection's open transaction sees.

        The side's server then runs two reads of one snapshot at once (pg_export_snapshot, then
        SET TRANSACTION SNAPSHOT in the helper's first statement); the helper is private to
        the caller, never pooled, and closed on exit.
        """
        conn = self.source if side == "source" else self.target
        row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        assert row is not None
        helper = _open(self.endpoints[0 if side == "source" else 1])
        self.helpers.append(helper)
        try:
            with helper.transaction():
                helper.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(row[0])))
                yield helper
        finally:
            self.helpers.remove(helper)
            try:
                helper.close()
            except psycopg.Error:
                pass

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for conn in (self.source, self.target):
            try:
                conn.close()
            except psycopg.Error:
                pass


_END = object()


class _Prefetch(Iterator[list[Any]]):
    """Chunks of ``produce`` read ahead on the pair's executor: a side's server keeps working
    while this thread merges. Errors are raised here, in the consumer."""

    def __init__(self, pair: _Pair, produce: Callable[[], Iterable[list[Any]]], depth: int = 3) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._future = pair.executor.submit(self._run, produce)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[], Iterable[list[Any]]]) -> None:
        try:
            for chunk in produce():
                if not self._put(chunk):
                    return
        finally:
            self._put(_END)

    def __next__(self) -> list[Any]:
        item = self._queue.get()
        if item is _END:
            self._future.result()  # the producer's error, if it failed
            raise StopIteration
        rows: list[Any] = item
        return rows

    def close(self) -> None:
        """Stop reading ahead (the consumer gave up early) and wait for the producer."""
        if not self._future.done():
            self._stop.set()
            while not self._future.done():
                try:
                    self._queue.get(timeout=0.1)
                except queue.Empty:
                    pass
        try:
            self._future.result()
        except BaseException as exc:
            log.debug("read-ahead stopped: %s", exc)


class _PackedInt8s(bytes):
    """An int8[] already in PostgreSQL's binary send form (``array_send`` output)."""


class _PackedInt8sDumper(Dumper):
    """Passes :class:`_PackedInt8s` through as a binary int8[] parameter, untouched."""

    format = Format.BINARY
    oid = 1016  # int8[]

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


_LITTLE_ENDIAN = sys.byteorder == "little"


def _int8s(data: bytes) -> array[int]:
    """Big-endian int8s laid end to end (``int8send`` output, concatenated) as an array of ints."""
    values = array("q")
    values.frombytes(data)
    if _LITTLE_ENDIAN:
        values.byteswap()
    return values


def _pack_int8s(values: Sequence[int]) -> _PackedInt8s:
    """An int8[] in PostgreSQL's binary form, built with bytes slicing rather than a loop per value."""
    count = len(values)
    if not count:
        return _PackedInt8s(struct.pack(">iii", 0, 0, 20))
    raw = array("q", values)
    if _LITTLE_ENDIAN:
        raw.byteswap()
    body = raw.tobytes()
    out = bytearray(12 * count)  # each element: its length (int4, always 8), then the value
    out[3::12] = b"\x08" * count
    for byte in range(8):
        out[4 + byte::12] = body[byte::8]
    # ndim 1, no NULLs, element type int8 (oid 20), the dimension's length and lower bound 1.
    return _PackedInt8s(struct.pack(">iiiii", 1, 0, 20, count, 1) + bytes(out))


def _cancel_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.cancel_safe(timeout=5)
    except (psycopg.Error, OSError):
        pass


#: Set per session rather than at connect time, so a pooled session can carry it too.
_APPLICATION_NAME = "pgtide-verify"


def _open(endpoint: Endpoint) -> psycopg.Connection[Any]:
    """A session pinned for verify: canonical output, long-scan settings, REPEATABLE READ READ ONLY.

    Borrowed from the command's pool when there is one (:func:`connect`): the pair holds it for
    a whole run of tables and hands it back on close, which rolls back, restores autocommit and
    the default transaction attributes, and RESETs every setting made here, so the next
    borrower sees none of it. Snapshots never outlive a transaction on the one session that
    took them (helpers import theirs, :meth:`_Pair.sharing_snapshot`), so a pooled session
    is as safe as a dedicated one.
    """
    conn = connect(endpoint)
    try:
        settings = {**CANONICAL_SETTINGS, **_SESSION_SETTINGS, "application_name": _APPLICATION_NAME}
        for name, value in settings.items():
            conn.execute(sql.SQL("SELECT pg_catalog.set_config({}, {}, false)").format(
                sql.Literal(name), sql.Literal(value)))
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
    except BaseException:
        conn.close()
        raise
    return conn


def _in_snapshot(conn: psycopg.Connection[Any], action: Callable[[], T]) -> T:
    """Run ``action`` in one REPEATABLE READ, READ ONLY transaction."""
    with conn.transaction():
        return action()
