"""Naming the differing keys of key ranges: one-sided ranges counted, counts apart settled by
keys, the rest row by row.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..infra.db import Query
from .buckets import _TableBase
from .connections import _int8s, _pack_int8s, _PackedInt8s, _PackedInt8sDumper, _Prefetch
from .events import RangesListed, _check
from .merge import (
    DifferenceKind,
    Span,
    Tally,
    coalesce,
    kind_of,
)

log = logging.getLogger("pgtide.verify")


class _Listing(_TableBase):
    # -- listing key ranges: both sides in key order, merged ------------------------------------

    def _chunk_sql(self, side: Literal["source", "target"], first: int, last: int, limit: int) -> Query:
        """(key, row hash) of one key range in key order, through the primary key's index."""
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        # Bounds as literals, not parameters: the filter is the server's deparsed text and may hold '%'.
        return sql.SQL(
            "SELECT {k}::int8, {h} FROM {tab} AS t WHERE {k} >= {lo}::int8 AND {k} <= {hi}::int8 AND {w} "
            "ORDER BY {k} LIMIT {n}"
        ).format(k=key, h=shape.side(side).row_hash, tab=shape.table_sql, w=shape.where,
                 lo=sql.Literal(first), hi=sql.Literal(last), n=sql.Literal(limit))

    def _count_sql(self, first: int, last: int) -> Query:
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        return sql.SQL("SELECT count(*) FROM {tab} AS t WHERE {k} >= {lo}::int8 AND {k} <= {hi}::int8 AND {w}").format(
            tab=shape.table_sql, k=key, lo=sql.Literal(first), hi=sql.Literal(last), w=shape.where)

    def _chunks(self, side: Literal["source", "target"], spans: Sequence[Span], limit: int | None = None
                ) -> Iterator[list[tuple[int, int]]]:
        """One side's rows of ``spans`` (sorted, disjoint) in key order, a chunk per query.

        Keyset pagination inside the caller's snapshot: each chunk is an index range scan
        starting after the previous chunk's last key, so nothing is held open between chunks.
        """
        conn = self.pair.source if side == "source" else self.pair.target
        # Binary: two int8 a row parse measurably faster than their text.
        cursor = conn.cursor(binary=True)
        size = self.options.stream_rows
        left = limit
        for span in spans:
            first = span.first
            while left is None or left > 0:
                _check(self.pair.cancel)
                want = size if left is None else min(size, left)
                rows = cursor.execute(self._chunk_sql(side, first, span.last, want)).fetchall()
                if rows:
                    yield rows
                if left is not None:
                    left -= len(rows)
                if len(rows) < want or rows[-1][0] >= span.last:
                    break
                first = rows[-1][0] + 1
            if left is not None and left <= 0:
                return

    def _packed_sql(self, first: int, last: int, limit: int) -> Query:
        """The source's next chunk of a key range, packed on the server: (rows, last key, keys, hashes).

        Keys and row hashes come back as two int8 arrays in their binary send form: bytes
        this process never decodes, only hands to the target (see :meth:`_join_sql`).
        """
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        return sql.SQL(
            "SELECT count(*), max(s.k), pg_catalog.array_send(coalesce(pg_catalog.array_agg(s.k), '{{}}')), "
            "pg_catalog.array_send(coalesce(pg_catalog.array_agg(s.h), '{{}}')) "
            "FROM (SELECT {k}::int8 AS k, {h} AS h FROM {tab} AS t "
            "WHERE {k} >= {lo}::int8 AND {k} <= {hi}::int8 AND {w} ORDER BY {k} LIMIT {n}) AS s"
        ).format(k=key, h=shape.source.row_hash, tab=shape.table_sql, w=shape.where,
                 lo=sql.Literal(first), hi=sql.Literal(last), n=sql.Literal(limit))

    def _packed_chunks(self, spans: Sequence[Span]) -> Iterator[list[Any]]:
        """The source's rows of ``spans`` (sorted, disjoint), packed a key interval at a time.

        Keyset pagination in the caller's snapshot; the intervals tile each span, so every
        target key of a span falls in exactly one of them. Yields [first, last, keys, hashes].
        """
        cursor = self.pair.source.cursor(binary=True)
        size = self.options.stream_rows
        for span in spans:
            first = span.first
            while True:
                _check(self.pair.cancel)
                row = cursor.execute(self._packed_sql(first, span.last, size)).fetchone()
                assert row is not None
                rows, top, keys, hashes = row
                last = span.last if rows < size or top >= span.last else int(top)
                yield [first, last, bytes(keys), bytes(hashes)]
                if last >= span.last:
                    break
                first = last + 1

    def _join_sql(self, first: int, last: int, room: int) -> Query:
        """The target compares a source chunk (parameters $1 keys, $2 hashes) with its own rows.

        One row of exact counts (missing, extra, different) with NULL key, then the first
        ``room`` differing keys in key order: (key, source hash, target hash, NULLs).
        """
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        counts = sql.SQL(
            "SELECT NULL::int8, NULL::int8, NULL::int8, count(*) FILTER (WHERE d.th IS NULL), "
            "count(*) FILTER (WHERE d.sh IS NULL), count(*) FILTER (WHERE d.sh IS NOT NULL AND d.th IS NOT NULL) "
            "FROM d"
        )
        listing = sql.SQL(
            " UNION ALL (SELECT d.k, d.sh, d.th, NULL::int8, NULL::int8, NULL::int8 FROM d ORDER BY d.k LIMIT {})"
        ).format(sql.Literal(room)) if room > 0 else sql.SQL("")
        return sql.SQL(
            "WITH d AS MATERIALIZED (SELECT coalesce(s.k, o.k) AS k, s.h AS sh, o.h AS th "
            "FROM ROWS FROM (pg_catalog.unnest($1::int8[]), pg_catalog.unnest($2::int8[])) AS s(k, h) "
            "FULL JOIN (SELECT {k}::int8 AS k, {h} AS h FROM {tab} AS t "
            "WHERE {k} >= {lo}::int8 AND {k} <= {hi}::int8 AND {w}) AS o ON s.k = o.k "
            "WHERE s.k IS NULL OR o.k IS NULL OR s.h <> o.h) "
            "{counts}{listing}"
        ).format(k=key, h=shape.target.row_hash, tab=shape.table_sql, w=shape.where,
                 lo=sql.Literal(first), hi=sql.Literal(last), counts=counts, listing=listing)

    def _merge(self, spans: Sequence[Span], tally: Tally) -> None:
        """Name every differing key of ``spans``, comparing on the target's server.

        The source packs each chunk of its (key, row hash) pairs into two binary int8
        arrays (read ahead on the pair's executor); the target joins them with its own
        rows of the same key interval and returns exact counts by kind plus only the first
        keys the tally still has room for. No row becomes a Python object unless it is
        kept, so dense differences cost about two index scans, one per side, in parallel.
        """
        source = _Prefetch(self.pair, lambda: self._packed_chunks(spans))
        # Native $n placeholders: the filter is the server's deparsed text and may hold '%'.
        cursor = psycopg.RawCursor(self.pair.target)
        cursor.adapters.register_dumper(_PackedInt8s, _PackedInt8sDumper)
        try:
            for first, last, keys, hashes in source:
                _check(self.pair.cancel)
                rows = cursor.execute(self._join_sql(first, last, tally.room),
                                      [_PackedInt8s(keys), _PackedInt8s(hashes)], binary=True).fetchall()
                counted: dict[DifferenceKind, int] = {"missing": 0, "extra": 0, "different": 0}
                for key, source_hash, target_hash, missing, extra, different in rows:
                    if key is None:
                        counted = {"missing": int(missing), "extra": int(extra), "different": int(different)}
                        continue
                    kind = kind_of(source_hash, target_hash)
                    counted[kind] -= 1
                    tally.add((str(key),), source_hash, target_hash)
                for counted_kind, left in counted.items():
                    tally.count(counted_kind, left)
        finally:
            source.close()
            cursor.close()

    def _one_sided(self, span: Span, kind: DifferenceKind, tally: Tally) -> bool:
        """A range only one side has rows in: count them there, list only as many as are kept.

        Counting on the server is exact and far cheaper than shipping rows nobody will see.
        False when the other side is not empty after all (it changed since the aggregates).
        """
        def count(conn: psycopg.Connection[Any]) -> int:
            return int(conn.execute(self._count_sql(span.first, span.last)).fetchone()[0])  # type: ignore[index]

        on_source, on_target = self.pair.both(count, count)
        rows, other = (on_source, on_target) if kind == "missing" else (on_target, on_source)
        if other:
            return False
        listed = 0
        for chunk in self._chunks("source" if kind == "missing" else "target", [span], limit=tally.room):
            for key, row_hash in chunk:
                if kind == "missing":
                    tally.add((str(key),), row_hash, None)
                else:
                    tally.add((str(key),), None, row_hash)
            listed += len(chunk)
        tally.count(kind, rows - listed)
        return True

    # -- listing by keys: ranges whose counts differ ----------------------------------------------

    def _keys_sql(self, first: int, last: int) -> Query:
        """(rows, keys) of one key range: the keys as one bytea of big-endian int8s, in no order.

        Only the key is read (an index-only scan where the visibility map allows), nothing is
        hashed, and the server builds one value that this process turns into an array of ints
        at C speed (``int8send`` output laid end to end: no per-element header to skip).
        """
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        return sql.SQL(
            "SELECT count(*), pg_catalog.string_agg(pg_catalog.int8send({k}::int8), ''::bytea) FROM {tab} AS t "
            "WHERE {k} >= {lo}::int8 AND {k} <= {hi}::int8 AND {w}"
        ).format(k=key, tab=shape.table_sql, w=shape.where, lo=sql.Literal(first), hi=sql.Literal(last))

    def _lookup_sql(self, side: Literal["source", "target"], room: int) -> Query:
        """Count and sum of row hashes of the rows with the keys in $1 (int8[]), NULL key; then the
        first ``room`` of them in key order, (key, NULL, hash). Keys through the primary key's index."""
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        # ARRAY(SELECT unnest(..)): the planner does not estimate thousands of constants one by one.
        rows = sql.SQL("FROM {tab} AS t WHERE {k} = ANY(ARRAY(SELECT pg_catalog.unnest($1::int8[]))) AND {w}").format(
            k=key, tab=shape.table_sql, w=shape.where)
        if room <= 0:
            return sql.SQL("SELECT NULL::int8, count(*), sum({h}) {rows}").format(h=shape.side(side).row_hash, rows=rows)
        return sql.SQL(
            "WITH d AS MATERIALIZED (SELECT {k}::int8 AS k, {h} AS h {rows}) "
            "SELECT NULL::int8, count(*), sum(d.h) FROM d "
            "UNION ALL (SELECT d.k, NULL::int8, d.h::numeric FROM d ORDER BY d.k LIMIT {n})"
        ).format(k=key, h=shape.side(side).row_hash, rows=rows, n=sql.Literal(room))

    def _lookup(self, side: Literal["source", "target"], keys: list[int], room: int
                ) -> tuple[int, int, list[tuple[int, int]]]:
        """(rows found, sum of their row hashes, the first ``room`` (key, hash)) for ``keys``."""
        if not keys:
            return 0, 0, []
        conn = self._lookups.get(side) or (self.pair.source if side == "source" else self.pair.target)
        # Native $n placeholders: the filter is the server's deparsed text and may hold '%'.
        cursor = psycopg.RawCursor(conn)
        cursor.adapters.register_dumper(_PackedInt8s, _PackedInt8sDumper)
        try:
            rows = cursor.execute(self._lookup_sql(side, room), [_pack_int8s(keys)], binary=True).fetchall()
        finally:
            cursor.close()
        found, total, first = 0, 0, []
        for key, count, value in rows:
            if key is None:
                found, total = int(count), int(value or 0)
            else:
                first.append((int(key), int(value)))
        return found, total, first

    def _key_units(self, spans: Sequence[Span]) -> list[list[Span]]:
        """Adjacent spans gathered into units of about ``stream_rows`` rows: one listing query per side each."""
        units: list[list[Span]] = []
        rows = 0
        for span in spans:
            size = max(span.source_rows, span.target_rows)
            if units and units[-1][-1].last + 1 == span.first and rows + size <= self.options.stream_rows:
                units[-1].append(span)
                rows += size
            else:
                units.append([span])
                rows = size
        return units

    def _listed_keys(self, side: Literal["source", "target"], units: Sequence[list[Span]]
                     ) -> Iterator[list[Any]]:
        conn = self.pair.source if side == "source" else self.pair.target
        for unit in units:
            _check(self.pair.cancel)
            row = conn.execute(self._keys_sql(unit[0].first, unit[-1].last)).fetchone()
            assert row is not None
            yield [int(row[0]), bytes(row[1] or b"")]

    def _list_by_keys(self, spans: Sequence[Span], tally: Tally) -> None:
        """Name the differing keys of ranges whose row counts differ, from their keys alone.

        Both sides list only their keys (in parallel, read ahead); a set difference here gives
        the missing and extra keys exactly. Whether the rows both sides hold agree follows from
        the aggregates that found the ranges: the source's sum of row hashes less its missing
        rows' must equal the target's less its extra rows', so only the one-sided rows are
        hashed, looked up by key while the next unit's keys are compared. A unit (a few adjacent
        ranges) where that does not hold — a row differs, or a side changed since the
        aggregates — is listed with its row hashes instead (:meth:`_merge`), so the counts stay
        exact either way. Units are counted in key order: the keys kept are the lowest ones.
        """
        units = self._key_units(spans)
        pending: collections.deque[tuple[list[Span], list[int], list[int], Future[Any]]] = collections.deque()

        def settle_first() -> None:
            unit, missing, extra, looked_up = pending.popleft()
            if not self._count_by_keys(unit, missing, extra, looked_up.result(), tally):
                self._merge(coalesce(unit), tally)

        def drain() -> None:  # the lookups still running end before their sessions do
            for *_, looked_up in pending:
                try:
                    looked_up.result()
                except BaseException as exc:
                    log.debug("lookup abandoned: %s", exc)

        with contextlib.ExitStack() as stack:
            if len(units) > 1 and any(s.source_rows > s.target_rows for s in spans):
                # Rows missing on the target are looked up on the source while it lists the next
                # keys: on a session of its own, in the same snapshot.
                self._lookups["source"] = stack.enter_context(self.pair.sharing_snapshot("source"))
                stack.callback(self._lookups.clear)
            source = _Prefetch(self.pair, lambda: self._listed_keys("source", units))
            stack.callback(source.close)
            target = _Prefetch(self.pair, lambda: self._listed_keys("target", units))
            stack.callback(target.close)
            stack.callback(drain)
            for unit, (source_rows, source_keys), (target_rows, target_keys) in zip(
                    units, source, target, strict=True):
                _check(self.pair.cancel)
                if (source_rows != sum(s.source_rows for s in unit)
                        or target_rows != sum(s.target_rows for s in unit)):
                    # A side changed since the aggregates: their sums say nothing about this listing.
                    while pending:
                        settle_first()
                    self._merge(coalesce(unit), tally)
                    continue
                missing, extra = _key_difference(_int8s(source_keys), _int8s(target_keys))
                # The hashes of the keys kept matter only to the live re-check, which compares them.
                room = tally.room if self.waiter.active else 0
                pending.append((unit, missing, extra, self.pair.executor.submit(self._look_up, missing, extra, room)))
                while len(pending) > 1:
                    settle_first()
            while pending:
                settle_first()

    def _look_up(self, missing: list[int], extra: list[int], room: int) -> tuple[Any, Any]:
        return self._lookup("source", missing, room), self._lookup("target", extra, room)

    def _count_by_keys(self, unit: Sequence[Span], missing: list[int], extra: list[int],
                       looked_up: tuple[Any, Any], tally: Tally) -> bool:
        """Count and keep one unit's missing and extra keys; False (nothing counted) unless the sums
        show the rows both sides hold agree."""
        (found_missing, missing_sum, first_missing), (found_extra, extra_sum, first_extra) = looked_up
        if found_missing != len(missing) or found_extra != len(extra):
            return False
        source_sum = sum(s.source_sum or 0 for s in unit)
        target_sum = sum(s.target_sum or 0 for s in unit)
        if source_sum - missing_sum != target_sum - extra_sum:
            return False  # some row both sides hold differs: list the unit with its row hashes
        if not self.waiter.active:  # any non-NULL hash marks the side holding the row
            first_missing = [(key, 0) for key in missing[:tally.room]]
            first_extra = [(key, 0) for key in extra[:tally.room]]
        kept = heapq.merge(((key, row_hash, None) for key, row_hash in first_missing),
                           ((key, None, row_hash) for key, row_hash in first_extra))
        for key, source_hash, target_hash in kept:
            tally.add((str(key),), source_hash, target_hash)
        tally.count("missing", len(missing) - len(first_missing))
        tally.count("extra", len(extra) - len(first_extra))
        return True

    def list_ranges(self, leaves: list[Span], tally: Tally) -> tuple[int, int]:
        """Name the differing keys of ``leaves`` into ``tally``, in key order; (ranges listed, dense ones).

        One snapshot per side for the whole listing. Live: the target's is taken once it has
        applied past the source's, so a difference found is a first observation, as for any key.
        A range only one side holds rows in is counted there; one whose counts differ is settled
        from its keys (:meth:`_list_by_keys`); the others are compared row by row (:meth:`_merge`).
        """
        spans = coalesce(leaves)
        if not spans:
            return 0, 0
        dense = sum(1 for span in spans if span.dense)
        self._rechecking(len(spans), 0, f"listing {len(spans)} differing key range(s), {dense} dense")
        before = tally.total()
        groups: list[tuple[str, list[Span]]] = []
        for leaf in sorted(leaves, key=lambda s: s.first):
            how = "one-sided" if leaf.one_sided else "keys" if leaf.settles_by_keys else "rows"
            if groups and groups[-1][0] == how:
                groups[-1][1].append(leaf)
            else:
                groups.append((how, [leaf]))
        with self.pair.source.transaction():
            self.waiter.wait(self.waiter.source_position())
            with self.pair.target.transaction():
                # Group by group, in key order: the keys kept are the lowest ones.
                for how, group in groups:
                    if how == "keys":
                        self._list_by_keys(group, tally)
                    elif how == "rows":
                        self._merge(coalesce(group), tally)
                    else:
                        for span in coalesce(group):
                            kind = span.one_sided
                            assert kind is not None
                            if not self._one_sided(span, kind, tally):
                                self._merge([span], tally)
        self.emit(RangesListed(self.table.database, self.table.schema, self.table.name, len(spans), dense,
                               tally.total() - before))
        return len(spans), dense


def _key_difference(source: array[int], target: array[int]) -> tuple[list[int], list[int]]:
    """(keys only in ``source``, keys only in ``target``), each sorted.

    One set and one pass over the other side when no key is extra (the count says so), which
    is the usual dense case: a target short of rows.
    """
    if source == target:
        return [], []
    missing = set(source)
    missing.difference_update(target)
    extra_count = len(target) - (len(source) - len(missing))
    extra = set(target).difference(source) if extra_count else set()
    return sorted(missing), sorted(extra)
