"""Comparing one table: the first pass, then naming the rows of what differs, re-checked when
live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..infra.db import Query
from .bisection import _Bisecting
from .buckets import _NO_ROWS, Buckets, Key, _batches
from .connections import _in_snapshot, _Pair
from .listing import _Listing
from .merge import (
    DifferenceKind,
    Span,
    Tally,
    kind_of,
)
from .shapes import _where_sql


class _TableVerifier(_Listing, _Bisecting):
    """Every step of comparing one table (see :mod:`.compare` for the method)."""

    # -- naming keys ------------------------------------------------------------------------------

    def _rows_sql(self, side: Literal["source", "target"], *, buckets: Sequence[int] | None = None,
                  keys: Sequence[Key] | None = None) -> Query:
        """(key as text..., row hash) for some hash buckets or keys."""
        shape = self.shape
        row_hash = shape.side(side).row_hash
        key_text = sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in shape.key)
        if buckets is not None:
            return sql.SQL("SELECT {kt}, {h} FROM {tab} AS t WHERE {w} AND {b} = ANY({ids})").format(
                kt=key_text, h=row_hash, tab=shape.table_sql, w=shape.where,
                b=shape.bucket_sql(side), ids=sql.Literal([int(b) for b in buckets]),
            )
        assert keys is not None
        names = [sql.Identifier(f"_pgtide_k{i}") for i in range(len(shape.key))]
        casts = sql.SQL(", ").join(
            sql.SQL("u.{}::{}").format(name, sql.SQL(type_name))  # type: ignore[arg-type]
            for name, type_name in zip(names, shape.key_types, strict=True)
        )
        arrays = sql.SQL(", ").join(
            sql.SQL("{}::text[]").format(sql.Literal([key[i] for key in keys])) for i in range(len(shape.key))
        )
        return sql.SQL(
            "SELECT {kt}, {h} FROM {tab} AS t WHERE {w} AND ({k}) IN "
            "(SELECT {casts} FROM unnest({arrays}) AS u({names}))"
        ).format(
            kt=key_text, h=row_hash, tab=shape.table_sql, w=shape.where,
            k=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in shape.key),
            casts=casts, arrays=arrays, names=sql.SQL(", ").join(names),
        )

    def _collect_rows(self, side: Literal["source", "target"], **what: Any) -> dict[Key, int]:
        conn = self.pair.source if side == "source" else self.pair.target
        width = len(self.shape.key)
        return {tuple(row[:width]): int(row[width]) for row in conn.execute(self._rows_sql(side, **what))}

    def _fetch(self, **what: Any) -> tuple[dict[Key, int], dict[Key, int]]:
        """(key -> row hash) on both sides: the source, then the target once caught up."""
        source = _in_snapshot(self.pair.source, lambda: self._collect_rows("source", **what))
        self.waiter.wait(self.waiter.source_position())
        return source, self._collect_rows("target", **what)

    def differing_keys(self, source: Buckets, target: Buckets, differing: list[int]
                       ) -> tuple[dict[Key, tuple[int | None, int | None]], dict[DifferenceKind, int]]:
        """Every differing key in the differing buckets: (source hash, target hash), None if absent.

        Only differing keys are kept (at most ``tracked_keys``; more are counted by kind),
        so memory stays bounded.
        """
        tally = Tally(self.options.tracked_keys)
        self._rechecking(len(differing), 0, f"naming the rows of {len(differing)} differing bucket(s)")
        if self.shape.method == "key ranges":
            ranges = [
                Span(*self.shape.bucket_bounds(bucket), source.get(bucket, _NO_ROWS)[0],
                     target.get(bucket, _NO_ROWS)[0], source_sum=source.get(bucket, _NO_ROWS)[1],
                     target_sum=target.get(bucket, _NO_ROWS)[1])
                for bucket in differing
            ]
            self.listed, self.dense = self.list_ranges(self.bisect(ranges), tally)
        else:
            per_bucket = max(1, self.shape.estimated_rows // (self.shape.mask + 1))
            for batch in _batches(differing, self.options.fetch_rows // per_bucket):
                source_rows, target_rows = self._fetch(buckets=batch)
                for key in sorted(set(source_rows) | set(target_rows), key=_key_order):
                    tally.add(key, source_rows.get(key), target_rows.get(key))
        return tally.tracked, tally.overflow

    def settle_keys(self, tracked: dict[Key, tuple[int | None, int | None]]
                    ) -> tuple[dict[Key, tuple[int | None, int | None]], int]:
        """Live: re-read differing keys; (keys that are real differences with their hashes, still changing)."""
        if not self.waiter.active or not tracked:
            return tracked, 0
        keys = sorted(tracked, key=_key_order)
        # The target values were read after a wait for the source read: a first observation.
        observed = dict(tracked)
        source: dict[Any, Any] = {key: value[0] for key, value in tracked.items()}
        target: dict[Any, Any] = {key: value[1] for key, value in tracked.items()}

        def read(side: Literal["source", "target"], ids: list[Key]) -> dict[Any, Any]:
            conn = self.pair.source if side == "source" else self.pair.target

            def run() -> dict[Any, Any]:
                out: dict[Any, Any] = {}
                for batch in _batches(ids, 5000):
                    out.update(self._collect_rows(side, keys=batch))
                return out

            return _in_snapshot(conn, run) if side == "source" else run()

        fresh = read("source", keys)
        position = self.waiter.source_position()
        for key in keys:
            source[key] = fresh.get(key)
        settled = self.settle(keys, source, target, position, lambda ids: read("source", ids),
                              lambda ids: read("target", ids), None, "keys", observed)
        return {key: (source[key], target[key]) for key in settled.persistent}, len(settled.changing)


_kind = kind_of
_KIND_ORDER: Mapping[DifferenceKind, int] = MappingProxyType({"missing": 0, "extra": 1, "different": 2})


def _key_bounds(pair: _Pair, table_sql: sql.Composable, key: str, where: str | None
                ) -> tuple[int | None, int | None]:
    query = sql.SQL("SELECT min(t.{k})::int8, max(t.{k})::int8 FROM {t} AS t WHERE {w}").format(
        k=sql.Identifier(key), t=table_sql, w=_where_sql(where))
    def bounds(conn: psycopg.Connection[Any]) -> tuple[Any, Any]:
        row = conn.execute(query).fetchone()
        return (row[0], row[1]) if row else (None, None)

    (s_low, s_high), (t_low, t_high) = pair.both(bounds, bounds)
    lows = [v for v in (s_low, t_low) if v is not None]
    highs = [v for v in (s_high, t_high) if v is not None]
    return (min(lows) if lows else None, max(highs) if highs else None)


def _key_order(key: Key) -> tuple[Any, ...]:
    """Numbers sort as numbers, everything else as text."""
    out: list[Any] = []
    for part in key:
        try:
            out.append((0, int(part), ""))
        except (TypeError, ValueError):
            out.append((1, 0, part or ""))
    return tuple(out)
