"""One table's first pass (count and sum of row hashes per bucket, both sides at once) and the
live re-check of what differs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..infra.db import Query
from .connections import T, _in_snapshot, _Pair
from .events import ChunkVerified, Rechecking, VerifyEvent, _check
from .live import _persists, _Settled, _Waiter
from .results import VerifyOptions
from .shapes import _Shape

Buckets = dict[int, tuple[int, int]]
Key = tuple[str, ...]
_NO_ROWS = (0, 0)


def _merge_rows(into: Buckets, rows: Iterable[tuple[Any, ...]]) -> None:
    for bucket, count, total in rows:
        old = into.get(int(bucket), _NO_ROWS)
        into[int(bucket)] = (old[0] + int(count), old[1] + int(total or 0))


def _buckets(conn: psycopg.Connection[Any], query: Query) -> Buckets:
    out: Buckets = {}
    _merge_rows(out, conn.execute(query))
    return out


def _differing(source: Buckets, target: Buckets) -> list[int]:
    return sorted(b for b in set(source) | set(target) if source.get(b, _NO_ROWS) != target.get(b, _NO_ROWS))


def _batches(items: Sequence[T], size: int) -> Iterable[list[T]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


class _TableBase:
    """The state of comparing one table, its first pass and its re-checks; the steps after are subclasses."""

    def __init__(self, shape: _Shape, pair: _Pair, waiter: _Waiter, options: VerifyOptions,
                 emit: Callable[[VerifyEvent], None], versions: tuple[int, int]) -> None:
        self.shape = shape
        self.pair = pair
        self.waiter = waiter
        self.options = options
        self.emit = emit
        self.versions = versions
        self.table = shape.table
        self.resolved = 0
        #: Key ranges listed to name keys, and how many of them were dense.
        self.listed = 0
        self.dense = 0
        #: Sessions sharing a side's listing snapshot, for lookups by key while that side lists.
        self._lookups: dict[str, psycopg.Connection[Any]] = {}

    def _rechecking(self, buckets: int, keys: int, reason: str) -> None:
        self.emit(Rechecking(self.table.database, self.table.schema, self.table.name, buckets, keys, reason))

    # -- first pass ---------------------------------------------------------------------------

    def _slices(self, pages: int, version: int) -> list[tuple[int | None, int | None]]:
        size = self.options.slice_pages
        if version < 140000 or pages <= size:  # TID range scans: PostgreSQL 14+
            return [(None, None)]
        count = math.ceil(pages / size)
        return [(i * size, None if i == count - 1 else (i + 1) * size) for i in range(count)]

    def aggregate_sql(self, side: Literal["source", "target"], first: int | None = None, last: int | None = None,
                      buckets: Sequence[int] | None = None) -> Query:
        """count and sum of row hashes per bucket (a physical slice, or some buckets only)."""
        shape = self.shape
        conditions = [shape.where]
        if first:
            conditions.append(sql.SQL("t.ctid >= {}::tid").format(sql.Literal(f"({first},0)")))
        if last is not None:
            conditions.append(sql.SQL("t.ctid < {}::tid").format(sql.Literal(f"({last},0)")))
        where = sql.SQL(" AND ").join(conditions)
        if shape.method == "row hash":
            # The row hash is also the bucket: compute it once per row.
            query = sql.SQL(
                "SELECT h & {m}::int8, count(*), sum(h) FROM (SELECT {h} AS h FROM {t} AS t WHERE {w} OFFSET 0) AS s"
            ).format(m=sql.Literal(shape.mask), h=shape.side(side).row_hash, t=shape.table_sql, w=where)
            if buckets is not None:
                query = sql.SQL("{} WHERE h & {}::int8 = ANY({})").format(
                    query, sql.Literal(shape.mask), sql.Literal(list(buckets)))
            return sql.SQL("{} GROUP BY 1").format(query)
        if buckets is not None:
            where = sql.SQL("{} AND {} = ANY({})").format(where, shape.bucket_sql(side), sql.Literal(list(buckets)))
        return sql.SQL("SELECT {b}, count(*), sum({h}) FROM {t} AS t WHERE {w} GROUP BY 1").format(
            b=shape.bucket_sql(side), h=shape.side(side).row_hash, t=shape.table_sql, w=where
        )

    def first_pass(self) -> tuple[Buckets, Buckets, int | None]:
        source_slices = self._slices(self.shape.source.pages, self.versions[0])
        target_slices = self._slices(self.shape.target.pages, self.versions[1])
        total = len(source_slices) + len(target_slices)
        done = [0]
        lock = threading.Lock()

        def progress() -> None:
            with lock:
                done[0] += 1
                count = done[0]
            self.emit(ChunkVerified(self.table.database, self.table.schema, self.table.name, count, total))

        def read(conn: psycopg.Connection[Any], side: Literal["source", "target"],
                 slices: list[tuple[int | None, int | None]]) -> tuple[Buckets, int | None]:
            def run() -> tuple[Buckets, int | None]:
                # The snapshot's first statement: every commit it sees ends before this position.
                position = self.waiter.source_position() if side == "source" else None
                buckets: Buckets = {}
                for first, last in slices:
                    _check(self.pair.cancel)
                    _merge_rows(buckets, conn.execute(self.aggregate_sql(side, first, last)))
                    progress()
                return buckets, position

            return _in_snapshot(conn, run)

        (source, position), (target, _) = self.pair.both(
            lambda conn: read(conn, "source", source_slices), lambda conn: read(conn, "target", target_slices)
        )
        return source, target, position

    # -- settling live differences --------------------------------------------------------------

    def settle(
        self,
        ids: list[Any],
        source: dict[Any, Any],
        target: dict[Any, Any],
        position: int | None,
        read_source: Callable[[list[Any]], dict[Any, Any]],
        read_target: Callable[[list[Any]], dict[Any, Any]],
        absent: Any,
        what: str,
        observed: dict[Any, tuple[Any, Any]] | None = None,
    ) -> _Settled:
        """Re-read differing ``ids`` (buckets or keys) against a live subscription.

        ``source`` holds values read at ``position``. A round waits until the target has
        applied past ``position``, then reads the target: ids that agree are settled (they
        were changes in flight). The others are observed; an id whose observation persists
        across two rounds (see :func:`_persists`) is a real difference. Remaining ids are
        read on the source again for the next round. ``observed``: observations already
        made (target read after a wait). ``source`` and ``target`` are updated in place.
        """
        previous: dict[Any, tuple[Any, Any]] = dict(observed or {})
        persistent: list[Any] = []
        for _ in range(self.options.recheck_rounds):
            if not ids or not self.waiter.wait(position):
                break
            self._rechecking(len(ids) if what != "keys" else 0, len(ids) if what == "keys" else 0,
                             f"re-checking {len(ids)} differing {what} after replication caught up")
            target_now = read_target(ids)
            current: dict[Any, tuple[Any, Any]] = {}
            for i in ids:
                target[i] = target_now.get(i, absent)
                if source.get(i, absent) == target[i]:
                    self.resolved += 1
                else:
                    current[i] = (source.get(i, absent), target[i])
            done = {i for i in current if i in previous and _persists(previous[i], current[i], absent)}
            persistent.extend(i for i in current if i in done)
            ids = [i for i in current if i not in done]
            previous = current
            if not ids:
                break
            source_now = read_source(ids)
            position = self.waiter.source_position()  # after the read: covers every commit it saw
            for i in ids:
                source[i] = source_now.get(i, absent)
        if self.waiter.timed_out:
            return _Settled(persistent + ids, [])  # could not confirm: report, flagged unsettled
        return _Settled(persistent, ids)

    # -- key ranges: re-reading and bisecting ------------------------------------------------------

    def _ranges_sql(self, side: Literal["source", "target"], ranges: Sequence[tuple[int, int, int, int]]
                    ) -> Query:
        """Sub-bucket aggregates of key ranges, (id, first, last, width) each, via the key's index."""
        shape = self.shape
        values = sql.SQL(", ").join(
            sql.SQL("({}::int8, {}::int8, {}::int8, {}::int8)").format(*(sql.Literal(v) for v in r)) for r in ranges
        )
        key = sql.Identifier(shape.key[0])
        # The VALUES columns carry names no user column has: the user's filter sees only the table's.
        return sql.SQL(
            "SELECT r._pgtide_id, (t.{k}::int8 - r._pgtide_first) / r._pgtide_width, count(*), sum({h}) "
            "FROM (VALUES {v}) AS r(_pgtide_id, _pgtide_first, _pgtide_last, _pgtide_width) "
            "JOIN {tab} AS t ON t.{k} >= r._pgtide_first AND t.{k} <= r._pgtide_last "
            "WHERE {w} GROUP BY 1, 2"
        ).format(k=key, h=shape.side(side).row_hash, v=values, tab=shape.table_sql, w=shape.where)

    def _collect_ranges(self, side: Literal["source", "target"], ranges: Sequence[tuple[int, int, int, int]]
                        ) -> dict[tuple[int, int], tuple[int, int]]:
        conn = self.pair.source if side == "source" else self.pair.target
        out: dict[tuple[int, int], tuple[int, int]] = {}
        for batch in _batches(ranges, 500):
            for rid, sub, count, total in conn.execute(self._ranges_sql(side, batch)):
                out[(int(rid), int(sub))] = (int(count), int(total or 0))
        return out

    def _bucket_ranges(self, ids: list[int]) -> list[tuple[int, int, int, int]]:
        out = []
        for bucket in ids:
            first, last = self.shape.bucket_bounds(bucket)
            out.append((bucket, first, last, last - first + 1))
        return out

    def _read_buckets(self, side: Literal["source", "target"], ids: list[int]) -> Buckets:
        """Re-read some first-pass buckets: by key range (index) or, for hashes, one scan."""
        conn = self.pair.source if side == "source" else self.pair.target
        if self.shape.method == "key ranges":
            rows = _in_snapshot(conn, lambda: self._collect_ranges(side, self._bucket_ranges(ids)))
            out: Buckets = {}
            for (bucket, _), (count, total) in rows.items():
                old = out.get(bucket, _NO_ROWS)
                out[bucket] = (old[0] + count, old[1] + total)
            return out
        return _in_snapshot(conn, lambda: _buckets(conn, self.aggregate_sql(side, buckets=ids)))

    def settle_buckets(self, source: Buckets, target: Buckets, position: int | None,
                       differing: list[int]) -> tuple[list[int], list[int]]:
        """Live: re-read differing buckets; (persistent or unconfirmed, still changing)."""
        if not self.waiter.active or not differing or self.shape.method == "key hash":
            return differing, []
        settled = self.settle(differing, source, target, position,
                              lambda ids: self._read_buckets("source", ids),
                              lambda ids: self._read_buckets("target", ids), _NO_ROWS, "buckets")
        return settled.persistent, settled.changing
