"""Prove the target holds the same rows as the source: per table, per key range, per row.

How one table is compared (docs/architecture.md §6):

1. **One pass per side, at the same time.** Source and target each run (on their own
   connection, in parallel threads) one aggregate over the table in a single
   REPEATABLE READ snapshot: rows fall into buckets by primary key, and each bucket
   yields ``count(*)`` and ``sum(row hash)`` — order-independent, so the two servers'
   physical row orders do not matter, and nothing is sorted or concatenated. Large tables
   are read in physical slices (TID ranges, PostgreSQL 14+) so progress can be reported;
   bucket totals from all slices add up, whatever each side's physical layout.
2. **Only mismatching buckets are read again.** With a single integer key, buckets are key
   ranges and a mismatching range is bisected (16 sub-ranges a level, through the primary
   key index) until listing it is cheaper: it holds few rows, or its mismatch is dense
   (one side empty, counts far apart, most sub-ranges differing; see :mod:`.merge`). A
   range only one side has rows in is counted on the server and only the keys kept are
   listed. A range whose row counts differ is listed by its keys alone: each side sends
   its keys, no row hashes, as one binary int8 array per few ranges, both at once; a set
   difference here names the missing and extra keys exactly, and only those rows are
   hashed, looked up by key (the source's on a second session sharing the listing's
   snapshot, while it lists on). The rows both sides hold agree when the source's sum of
   row hashes less its missing rows' equals the target's less its extra rows' (as surely
   as any bucket's sums). Where that fails (a row differs, or a side changed since the
   aggregates) and in ranges whose counts agree, the source packs the range's
   ``(key, row hash)`` pairs, a chunk at a time, into two binary int8 arrays, and the
   target's server joins each chunk with its own rows: it returns exact counts of the keys
   missing, extra and different, and only the first keys kept, so rows never become
   Python objects. Other keys are bucketed by a hash of the key; mismatching buckets are
   re-read in one scan.
3. **Live replication.** When the target is subscribed to the source, a difference may be
   a change still in flight. The source's WAL insert position is recorded with each
   source read; before the matching target read, pgtide waits (bounded) until the target
   has applied past it, and differing buckets and keys are re-checked until they either
   agree or stay different, unchanged, across two reads. Only those are reported.

The row hash is computed over the columns by name, in the source's column order (so a
different physical column order on the target does not matter), in two parts XORed:

- columns of built-in types whose values compare exactly (integers, text and varchar
  under the C collation, char(n), bool, bytea, uuid, jsonb, date/time/timestamp(tz),
  inet, macaddr) go through ``hash_record_extended(ROW(...), 0)``: the types' own
  64-bit hash functions (the ones hash partitioning relies on, stable across versions),
  position-dependent, NULL distinct from every value, no text formatting at all — about
  1.5x cheaper per row than the text form (measured on pgbench_accounts);
- every other column (numeric, floats, interval, json, arrays, enums, composites, ranges,
  geometric types, domains over those, ...) goes through ``hashtextextended(ROW(...)::text,
  0)``: the record's text form, canonical once the session pins every setting that
  changes output (:data:`CANONICAL_SETTINGS`). In it NULL prints as nothing and '' as
  ``""``; values holding separators, quotes or spaces are quoted, so it is unambiguous;
  numeric keeps its scale, floats print shortest-exact, json keeps its text.

A column whose type falls in different classes on the two sides (say numeric against
integer) is compared by text form on both; smallint/integer/bigint form one class.
Values are therefore equal when their type says so for jsonb (key order, whitespace,
1 = 1.0), char(n) (trailing blanks) and timestamptz (the instant); byte-exact otherwise.

Tables without a primary key are compared as a multiset (count and sum of row hashes per
bucket of row hashes): the result cannot name rows. Schema-only tables must exist with
the same columns and hold no rows.
Filtered tables compare only the rows the filter selects, with the publication's own
resolved predicate when the publication exists.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import logging
import math
import queue
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus

from ..catalog.predicate import QUOTING_SETTINGS, deparsed, pin_quoting
from ..catalog.scope import Scope, TableScope, build_scope
from ..infra.db import Query, connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError, Interrupted
from ..infra.events import Cancelled, CancelToken, Event
from ..model.plan import Plan
from ..model.selection import (
    TableRef,
    UnresolvedName,
    format_qualified_name,
    parse_table_pattern,
    quote_ident,
)
from ..monitor.poll import (
    ApplyProgress,
    confirmed_flush_lsn,
    current_insert_lsn,
    lsn_reached,
)
from ..replication.naming import ReplicationNames, replication_names
from .merge import (
    DifferenceKind,
    Span,
    Tally,
    coalesce,
    counts_dense,
    kind_of,
    mostly_differing,
)

log = logging.getLogger("pgtide.verify")

T = TypeVar("T")

#: Every setting that changes how a value prints, pinned on both sessions.
CANONICAL_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "TimeZone": "UTC",
        "DateStyle": "ISO, YMD",
        "IntervalStyle": "postgres",
        "extra_float_digits": "1",
        "bytea_output": "hex",
        "lc_monetary": "C",
        # Types and regclass values print schema-qualified, identically on both sides.
        "search_path": "",
        # Row filters are the server's deparsed text, printed under this setting.
        **dict(QUOTING_SETTINGS),
    }
)

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

_INT8_SAFE = 1 << 61
#: Once replication failed to catch up in a database, later tables wait this long at most.
_STUCK_TIMEOUT = 3.0

TableStatus = Literal["match", "differ", "schema_differs", "skipped", "error"]
Method = Literal["key ranges", "key hash", "row hash", "schema only", "none"]


# -- options and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyOptions:
    #: Differing keys kept per table (all are counted).
    max_keys: int = 1000
    #: Tables verified at once (each uses one connection to each side).
    jobs: int = 2
    #: Rows per bucket of the first pass (key ranges), and per leaf after bisecting.
    rows_per_bucket: int = 10_000
    rows_per_hash_bucket: int = 1_000
    leaf_rows: int = 1_000
    #: Sub-ranges per bisection step.
    fanout: int = 16
    #: Tables larger than this many pages (128 MB) are read in slices of this size.
    slice_pages: int = 16384
    #: Re-check in-flight differences against a live subscription.
    live: bool = True
    #: Longest wait for the target to apply past a source position, per table.
    recheck_timeout: float = 30.0
    #: Re-reads of differing buckets / keys before what remains is reported.
    recheck_rounds: int = 4
    #: Rows fetched per side at most per query when naming keys.
    fetch_rows: int = 200_000
    #: Differing keys kept for re-checking and reporting (beyond: counted only).
    tracked_keys: int = 100_000
    #: A key range is listed instead of bisected once its row counts differ by this fraction
    #: of its rows (or one side is empty) ...
    dense_fraction: float = 0.05
    #: ... or once more than this fraction of its sub-ranges differ.
    dense_subranges: float = 0.5
    #: Rows per side per chunk when listing key ranges.
    stream_rows: int = 50_000

    def __post_init__(self) -> None:
        if self.max_keys < 0:
            raise InputError(f"max_keys must be 0 or more, not {self.max_keys}", "Pass --max-keys N with N >= 0.")
        if not 1 <= self.jobs <= 64:
            raise InputError(f"jobs must be between 1 and 64, not {self.jobs}", "Pass --jobs N with 1 <= N <= 64.")
        if self.recheck_timeout < 0:
            raise InputError("the re-check timeout cannot be negative", "Pass --recheck-timeout SECONDS >= 0.")
        if self.fanout < 2 or self.leaf_rows < 1 or self.rows_per_bucket < 1 or self.rows_per_hash_bucket < 1:
            raise InputError("bucket sizes must be positive and the fanout at least 2", "Use the defaults.")
        if not (0 <= self.dense_fraction <= 1 and 0 <= self.dense_subranges <= 1) or self.stream_rows < 1:
            raise InputError("density thresholds must lie between 0 and 1, chunks hold a row at least",
                             "Use the defaults.")


@dataclass(frozen=True)
class RowDifference:
    kind: DifferenceKind
    #: The primary key's values as text (canonical form), in key column order.
    key: tuple[str, ...]

    def describe(self, columns: Sequence[str]) -> str:
        pairs = ", ".join(f"{quote_ident(c)}={v}" for c, v in zip(columns, self.key, strict=False))
        return f"{self.kind}: {pairs}"


@dataclass(frozen=True)
class TableResult:
    database: str
    schema: str
    name: str
    status: TableStatus
    method: Method
    key_columns: tuple[str, ...] = ()
    #: The predicate compared under (filtered tables).
    where: str | None = None
    schema_only: bool = False
    source_rows: int | None = None
    target_rows: int | None = None
    missing: int = 0
    extra: int = 0
    different: int = 0
    #: The first ``max_keys`` differing keys, sorted by kind then key.
    differences: tuple[RowDifference, ...] = ()
    #: False when rows cannot be named (no primary key): only the totals are compared.
    pinpointed: bool = True
    buckets: int = 0
    #: Buckets (tables without a key) that still differ.
    differing_buckets: int = 0
    #: Buckets and keys that differed at first and agreed after replication caught up.
    resolved_in_flight: int = 0
    #: Keys (or buckets) that changed on the source at every re-check: changes in flight,
    #: not reported as differences.
    still_changing: int = 0
    #: The target did not catch up within the wait: what is reported may still be in flight.
    unsettled: bool = False
    #: Key ranges whose rows were listed from both sides to name the differing keys, and how
    #: many of them were listed whole, without bisecting, because most of their rows differed.
    listed_ranges: int = 0
    dense_ranges: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0

    @property
    def display(self) -> str:
        return f"{quote_ident(self.database)}.{format_qualified_name((self.schema, self.name))}"

    @property
    def difference_count(self) -> int:
        return self.missing + self.extra + self.different

    @property
    def ok(self) -> bool:
        return self.status in ("match", "skipped")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _plain(self)
        return data | {"table": self.display}


@dataclass(frozen=True)
class VerifyReport:
    tables: tuple[TableResult, ...]
    seconds: float
    #: Databases whose subscription was live (differences re-checked).
    live_databases: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables)

    @property
    def differing_tables(self) -> tuple[TableResult, ...]:
        return tuple(t for t in self.tables if not t.ok)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for table in self.tables:
            counts[table.status] = counts.get(table.status, 0) + 1
        return {
            "tables": len(self.tables),
            **counts,
            "missing": sum(t.missing for t in self.tables),
            "extra": sum(t.extra for t in self.tables),
            "different": sum(t.different for t in self.tables),
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


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


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- the per-table plan --------------------------------------------------------------------------

#: Built-in types hashed by value (through hash_record_extended) instead of by text form,
#: grouped into classes: both sides must be in the same class. Left out on purpose:
#: numeric (1.5 and 1.50 hash alike), floats (0 and -0), interval ('1 day' = '24 hours'),
#: arrays (the hash ignores dimensions), anything OID-based (enums, reg* types) and types
#: without an extended hash function (money, json, geometric types, ...).
_VALUE_HASH_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        "int2": "int", "int4": "int", "int8": "int",
        "text": "text", "varchar": "text", "bpchar": "bpchar",
        "bool": "bool", "bytea": "bytea", "uuid": "uuid", "jsonb": "jsonb",
        "date": "date", "time": "time", "timetz": "timetz", "timestamp": "timestamp", "timestamptz": "timestamptz",
        "inet": "inet", "cidr": "cidr", "macaddr": "macaddr", "macaddr8": "macaddr8",
    }
)
_COLLATABLE_CLASSES = frozenset({"text", "bpchar"})


@dataclass(frozen=True)
class _Column:
    name: str
    #: format_type() as the server prints it (schema-qualified where needed).
    type: str
    #: Value-hash class (see _VALUE_HASH_CLASSES), or None: compared by text form.
    hash_class: str | None
    #: The built-in base type to cast to (domains), when hashed by value.
    base: str | None


@dataclass(frozen=True)
class _Relation:
    """What one side's catalog says about a table (read for all tables at once)."""

    columns: tuple[_Column, ...]
    kind: str
    reltuples: float
    pages: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> _Column | None:
        return next((c for c in self.columns if c.name == name), None)


_RELATIONS_SQL = """
SELECT n.nspname, c.relname, c.relkind, c.reltuples::float8,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint,
       array_agg(a.attname::text ORDER BY a.attnum),
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum),
       array_agg(CASE WHEN bn.nspname = 'pg_catalog' AND bt.typtype = 'b' THEN bt.typname::text END
                 ORDER BY a.attnum),
       array_agg(coalesce(co.collisdeterministic, true) ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
JOIN pg_namespace bn ON bn.oid = bt.typnamespace
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
GROUP BY n.nspname, c.relname, c.relkind, c.reltuples, c.oid
"""


def _read_relations(conn: psycopg.Connection[Any], tables: Sequence[TableScope]) -> dict[tuple[str, str], _Relation]:
    value_hashing = conn.info.server_version >= 140000  # hash_record_extended
    rows = conn.execute(_RELATIONS_SQL, [[t.schema for t in tables], [t.name for t in tables]]).fetchall()
    out = {}
    for schema, name, kind, reltuples, pages, names, types, bases, deterministic in rows:
        columns = []
        for column, type_name, base, exact in zip(names, types, bases, deterministic, strict=True):
            hash_class = _VALUE_HASH_CLASSES.get(base) if value_hashing and base else None
            if hash_class in _COLLATABLE_CLASSES and not exact:
                hash_class = None  # a nondeterministic collation hashes 'A' and 'a' alike
            columns.append(_Column(column, type_name, hash_class, base if hash_class else None))
        out[(schema, name)] = _Relation(tuple(columns), kind, float(reltuples), int(pages or 0))
    return out


def _hash_sql(columns: Sequence[tuple[_Column, bool]]) -> sql.Composable:
    """64-bit hash of some columns of table alias ``t``: (column, hash by value?) pairs, in order."""
    def ident(column: _Column) -> sql.Composable:
        return sql.Identifier("t", column.name)

    by_value = []
    by_text = []
    for column, value in columns:
        if not value:
            by_text.append(ident(column))
            continue
        expression: sql.Composable = ident(column)
        if column.hash_class == "int":
            expression = sql.SQL("{}::pg_catalog.int8").format(expression)
        elif column.base is not None:
            expression = sql.SQL("{}::pg_catalog.{}").format(expression, sql.Identifier(column.base))
        if column.hash_class in _COLLATABLE_CLASSES:
            expression = sql.SQL('{} COLLATE "C"').format(expression)
        by_value.append(expression)
    parts = []
    if by_value:
        parts.append(sql.SQL("pg_catalog.hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(by_value)))
    if by_text:
        parts.append(sql.SQL("pg_catalog.hashtextextended(ROW({})::text, 0)").format(sql.SQL(", ").join(by_text)))
    if not parts:  # a table without columns: only the row counts compare
        return sql.SQL("0::int8")
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({} # {})").format(*parts)


@dataclass(frozen=True)
class _Side:
    """The SQL pieces of one side (the two sides' column types may differ)."""

    row_hash: sql.Composable
    key_hash: sql.Composable
    pages: int


@dataclass(frozen=True)
class _Shape:
    """How to compare one table."""

    table: TableScope
    method: Method
    table_sql: sql.Composable
    where: sql.Composable
    key: tuple[str, ...]
    key_types: tuple[str, ...]
    source: _Side
    target: _Side
    #: key ranges: bucket = (key - low) / width
    low: int = 0
    width: int = 1
    #: key hash / row hash: bucket = hash & mask
    mask: int = 0
    estimated_rows: int = 0

    def side(self, name: Literal["source", "target"]) -> _Side:
        return self.source if name == "source" else self.target

    @property
    def key_ident(self) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c) for c in self.key)

    @property
    def key_text(self) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in self.key)

    def bucket_sql(self, side: Literal["source", "target"]) -> sql.Composable:
        if self.method == "key ranges":
            return sql.SQL("({}::int8 - {}::int8) / {}::int8").format(
                sql.Identifier("t", self.key[0]), sql.Literal(self.low), sql.Literal(self.width)
            )
        if self.method == "key hash":
            return sql.SQL("({} & {}::int8)").format(self.side(side).key_hash, sql.Literal(self.mask))
        if self.method == "row hash":
            return sql.SQL("({} & {}::int8)").format(self.side(side).row_hash, sql.Literal(self.mask))
        return sql.SQL("0")

    def bucket_bounds(self, bucket: int) -> tuple[int, int]:
        """Inclusive key range of a first-pass bucket (integer division truncates toward 0)."""
        low, width = self.low, self.width
        if bucket > 0:
            first, last = low + bucket * width, low + (bucket + 1) * width - 1
        elif bucket == 0:
            first, last = low - width + 1, low + width - 1
        else:
            first, last = low + (bucket - 1) * width + 1, low + bucket * width
        return max(first, -(1 << 63)), min(last, (1 << 63) - 1)


def _where_sql(where: str | None) -> sql.Composable:
    return sql.SQL("({})").format(deparsed(where)) if where else sql.SQL("true")


def _shape(table: TableScope, source: _Relation, target: _Relation, where: str | None,
           bounds: tuple[int | None, int | None] | None, options: VerifyOptions, table_sql: sql.Composable) -> _Shape:
    key = table.info.primary_key
    pairs = [(column, target.column(column.name)) for column in source.columns]

    def hashed(side: int, names: Sequence[str] | None = None) -> sql.Composable:
        chosen = []
        for src, tgt in pairs:
            if names is not None and src.name not in names:
                continue
            assert tgt is not None
            by_value = src.hash_class is not None and src.hash_class == tgt.hash_class
            chosen.append((src if side == 0 else tgt, by_value))
        if names is not None:  # key columns in key order
            chosen.sort(key=lambda item: list(names).index(item[0].name))
        return _hash_sql(chosen)

    estimated = int(max(source.reltuples, target.reltuples, 0))
    if estimated <= 0:
        estimated = max(source.pages, target.pages) * 60
    if where and table.estimated_rows is not None:
        estimated = min(estimated, table.estimated_rows) if estimated else table.estimated_rows
    types = {c.name: c.type for c in source.columns}
    common: dict[str, Any] = {
        "table": table, "table_sql": table_sql, "where": _where_sql(where), "key": key,
        "key_types": tuple(types[c] for c in key), "estimated_rows": estimated,
        "source": _Side(hashed(0), hashed(0, key) if key else sql.SQL("0"), source.pages),
        "target": _Side(hashed(1), hashed(1, key) if key else sql.SQL("0"), target.pages),
    }

    def mask(rows_per_bucket: int) -> int:
        buckets = max(1, math.ceil(estimated / rows_per_bucket))
        return (1 << max(0, min(17, math.ceil(math.log2(buckets))))) - 1

    if not key:
        return _Shape(method="row hash", mask=mask(options.rows_per_hash_bucket), **common)  # type: ignore[arg-type]
    if bounds is not None:
        low, high = bounds
        if low is None or high is None:
            low = high = 0
        if low > -_INT8_SAFE and high < _INT8_SAFE:
            span = high - low + 1
            buckets = max(1, math.ceil(min(span, max(estimated, 1)) / options.rows_per_bucket))
            width = max(1, math.ceil(span / buckets))
            return _Shape(method="key ranges", low=low, width=width, **common)  # type: ignore[arg-type]
    return _Shape(method="key hash", mask=mask(options.rows_per_hash_bucket), **common)  # type: ignore[arg-type]


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


def _int8s(data: bytes) -> array[int]:
    """An int8[] without NULLs in its binary send form as an array of ints, by bytes slicing."""
    values = array("q")
    if len(data) <= 12:  # no dimensions: empty
        return values
    count = struct.unpack_from(">i", data, 12)[0]
    body = memoryview(data)[20:]  # after ndim, flags, element type, length, lower bound
    raw = bytearray(8 * count)
    for byte in range(8):  # each element: its length (4 bytes), then 8 bytes big-endian
        raw[byte::8] = body[4 + byte::12]
    values.frombytes(raw)
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


def _open(endpoint: Endpoint) -> psycopg.Connection[Any]:
    conn = connect(endpoint, application_name="pgtide-verify")
    try:
        for name, value in {**CANONICAL_SETTINGS, **_SESSION_SETTINGS}.items():
            conn.execute(sql.SQL("SELECT pg_catalog.set_config({}, {}, false)").format(
                sql.Literal(name), sql.Literal(value)))
    except BaseException:
        conn.close()
        raise
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _in_snapshot(conn: psycopg.Connection[Any], action: Callable[[], T]) -> T:
    """Run ``action`` in one REPEATABLE READ, READ ONLY transaction."""
    with conn.transaction():
        return action()


# -- live replication ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveReplication:
    """The subscription that keeps a target database in step with its source."""

    slot: str
    subscription: str


class _Waiter:
    """Waits until the target has applied the source's WAL up to a position."""

    def __init__(self, pair: _Pair, live: LiveReplication | None, deadline: float, wal_block_size: int) -> None:
        self.pair = pair
        self.live = live
        self.deadline = deadline
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
        while True:
            _check(self.pair.cancel)
            assert self.progress is not None
            if lsn_reached(self.progress.lsn(), position, self.block):
                return True
            if lsn_reached(confirmed_flush_lsn(self.pair.source, self.live.slot), position, self.block):
                return True
            if time.monotonic() >= self.deadline:
                self.timed_out = True
                return False
            self.pair.cancel.wait(delay)
            delay = min(delay * 1.5, 0.25)


# -- comparing one table ----------------------------------------------------------------------------

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


class _TableVerifier:
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

    def bisect(self, ranges: list[Span]) -> list[Span]:
        """Split differing key ranges until listing them is cheaper than splitting them again.

        A range is listed as it is once it holds few rows, or when its mismatch is dense
        (:func:`counts_dense`, :func:`mostly_differing`): then most of its rows differ, and
        every further level would read it again to skip little. Otherwise only its differing
        sub-ranges go on, with their counts.
        """
        options = self.options
        pending = ranges
        leaves: list[Span] = []
        while pending:
            split: list[tuple[int, int, int, int]] = []
            parents: list[Span] = []
            for span in pending:
                rows = max(span.source_rows, span.target_rows)
                if rows <= options.leaf_rows or span.last - span.first + 1 <= options.leaf_rows:
                    leaves.append(span)
                elif counts_dense(span.source_rows, span.target_rows, options.dense_fraction):
                    leaves.append(replace(span, dense=True))
                else:
                    width = max(1, math.ceil((span.last - span.first + 1) / options.fanout))
                    split.append((len(split), span.first, span.last, width))
                    parents.append(span)
            pending = []
            if not split:
                break
            self._rechecking(len(split), 0, f"bisecting {len(split)} differing key range(s)")
            sub_source = _in_snapshot(self.pair.source, functools.partial(self._collect_ranges, "source", split))
            self.waiter.wait(self.waiter.source_position())
            sub_target = self._collect_ranges("target", split)
            children: dict[int, list[Span]] = {}
            nonempty: dict[int, int] = {}
            for key in sorted(set(sub_source) | set(sub_target)):
                rid, sub = key
                nonempty[rid] = nonempty.get(rid, 0) + 1
                if sub_source.get(key) != sub_target.get(key):
                    _, first, last, width = split[rid]
                    sub_first = first + sub * width
                    (source_rows, source_sum), (target_rows, target_sum) = (
                        sub_source.get(key, _NO_ROWS), sub_target.get(key, _NO_ROWS))
                    children.setdefault(rid, []).append(Span(
                        sub_first, min(last, sub_first + width - 1), source_rows, target_rows,
                        source_sum=source_sum, target_sum=target_sum))
            for rid, parent in enumerate(parents):
                differing = children.get(rid, [])
                if mostly_differing(len(differing), nonempty.get(rid, 0), options.dense_subranges):
                    # The parent's counts and sums are the children's: the sub-aggregates are newer.
                    subs = range(options.fanout + 1)
                    leaves.append(Span(parent.first, parent.last,
                                       sum(sub_source.get((rid, s), _NO_ROWS)[0] for s in subs),
                                       sum(sub_target.get((rid, s), _NO_ROWS)[0] for s in subs),
                                       dense=True,
                                       source_sum=sum(sub_source.get((rid, s), _NO_ROWS)[1] for s in subs),
                                       target_sum=sum(sub_target.get((rid, s), _NO_ROWS)[1] for s in subs)))
                else:
                    pending.extend(differing)
        return leaves

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
        """(rows, keys) of one key range: the keys as one int8[] in its binary send form, in no order.

        Only the key is read (an index-only scan where the visibility map allows), nothing is
        hashed, and the server builds one value: the cheapest listing there is.
        """
        shape = self.shape
        key = sql.Identifier("t", shape.key[0])
        return sql.SQL(
            "SELECT count(*), pg_catalog.array_send(coalesce(pg_catalog.array_agg({k}::int8), '{{}}')) "
            "FROM {tab} AS t WHERE {k} >= {lo}::int8 AND {k} <= {hi}::int8 AND {w}"
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


def _table_sql(table: TableScope, *, inherited: bool) -> sql.Composable:
    """``ONLY schema.table``: each table's own rows (children are verified on their own),
    unless its partitions are not part of the run (then through the partitioned parent)."""
    ident = sql.Identifier(table.schema, table.name)
    return ident if inherited else sql.SQL("ONLY {}").format(ident)


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


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class _DatabaseRun:
    name: str
    source: Endpoint
    target: Endpoint
    tables: list[TableScope]
    live: LiveReplication | None
    #: Row filters as the publication uses them (they win over the scope's).
    filters: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Partitioned tables (at any level) whose partitions are verified in this run themselves.
    covered_parents: set[tuple[str, str]] = field(default_factory=set)
    #: A wait already timed out in this database: later tables wait briefly only.
    stuck: bool = False


class Verifier:
    """Runs a verification. Cancelling its token (:meth:`cancel`, or ``cancel.cancel()`` from any
    thread) stops it promptly with :class:`VerifyCancelled`, a :class:`Cancelled`."""

    def __init__(self, options: VerifyOptions | None = None, on_event: EventCallback | None = None, *,
                 cancel: CancelToken | None = None) -> None:
        self.options = options or VerifyOptions()
        self._on_event = on_event
        self._event_lock = threading.Lock()
        self._cancel = cancel or CancelToken()
        self._pairs: list[_Pair] = []
        self._pairs_lock = threading.Lock()
        self._counter = 0
        self._total = 0

    @property
    def token(self) -> CancelToken:
        return self._cancel

    def cancel(self) -> None:
        self._cancel.cancel()
        self._interrupt()

    def _interrupt(self) -> None:
        with self._pairs_lock:
            for pair in self._pairs:
                pair.interrupt()

    def _watch(self, finished: threading.Event) -> None:
        """A token cancelled elsewhere only sets a flag: stop the queries running on its behalf."""
        while not finished.is_set():
            if self._cancel.wait(0.1):
                if not finished.is_set():
                    self._interrupt()
                return

    def _emit(self, event: VerifyEvent) -> None:
        if self._on_event is not None:
            with self._event_lock:
                self._on_event(event)

    def run(self, runs: Sequence[_DatabaseRun]) -> VerifyReport:
        started = time.monotonic()
        self._total = sum(len(run.tables) for run in runs)
        results: list[TableResult] = []
        finished = threading.Event()
        threading.Thread(target=self._watch, args=(finished,), name="pgtide-verify-cancel", daemon=True).start()
        try:
            for run in runs:
                results.extend(self._run_database(run))
        except psycopg.OperationalError:
            if self._cancel.cancelled:  # a query stopped on our behalf, outside any one table
                raise VerifyCancelled() from None
            raise
        finally:
            finished.set()
        return VerifyReport(
            tables=tuple(results),
            seconds=time.monotonic() - started,
            live_databases=tuple(run.name for run in runs if run.live is not None),
        )

    def _new_pair(self, run: _DatabaseRun) -> _Pair:
        _check(self._cancel)
        pair = _Pair(run.source, run.target, self._cancel)
        with self._pairs_lock:
            self._pairs.append(pair)
        return pair

    def _release(self, pair: _Pair) -> None:
        with self._pairs_lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        pair.close()

    def _run_database(self, run: _DatabaseRun) -> list[TableResult]:
        if not run.tables:
            return []
        pair = self._new_pair(run)
        try:
            source_rel = _read_relations(pair.source, run.tables)
            target_rel = _read_relations(pair.target, run.tables)
            versions = (pair.source.info.server_version, pair.target.info.server_version)
            block = int(pair.source.execute("SHOW wal_block_size").fetchone()[0])  # type: ignore[index]
        except BaseException:
            self._release(pair)
            raise

        def pages(table: TableScope) -> int:
            relation = source_rel.get((table.schema, table.name))
            return relation.pages if relation else 0

        # Largest first, so parallel workers finish together; results keep the scope's order.
        order = sorted(range(len(run.tables)), key=lambda i: -pages(run.tables[i]))
        results: list[TableResult | None] = [None] * len(run.tables)
        idle: queue.SimpleQueue[_Pair] = queue.SimpleQueue()
        idle.put(pair)
        opened = [pair]
        opened_lock = threading.Lock()

        def one(index: int) -> None:
            try:
                current = idle.get_nowait()
            except queue.Empty:
                current = self._new_pair(run)
                with opened_lock:
                    opened.append(current)
            try:
                table = run.tables[index]
                results[index] = self._verify_table(
                    current, run, table, source_rel.get((table.schema, table.name)),
                    target_rel.get((table.schema, table.name)), versions, block,
                )
            finally:
                idle.put(current)

        try:
            jobs = min(self.options.jobs, len(run.tables))
            if jobs <= 1:
                for index in order:
                    _check(self._cancel)
                    one(index)
            else:
                with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pgtide-verify") as pool:
                    futures = [pool.submit(one, index) for index in order]
                    try:
                        for future in futures:
                            future.result()
                    except BaseException:
                        # Stop the other tables without cancelling the caller's token: it may be shared.
                        for each_future in futures:
                            each_future.cancel()
                        self._interrupt()
                        raise
        finally:
            for each in opened:
                self._release(each)
        return [r for r in results if r is not None]

    def _verify_table(self, pair: _Pair, run: _DatabaseRun, table: TableScope, source: _Relation | None,
                      target: _Relation | None, versions: tuple[int, int], block: int) -> TableResult:
        with self._event_lock:
            self._counter += 1
            index = self._counter
        self._emit(TableStarted(table.database, table.schema, table.name, index, self._total))
        started = time.monotonic()
        where = run.filters.get((table.schema, table.name), table.where) if table.copies_rows else None
        base = TableResult(
            database=table.database, schema=table.schema, name=table.name, status="match", method="none",
            key_columns=table.info.primary_key, where=where, schema_only=not table.copies_rows,
        )
        try:
            result = self._compare(pair, run, table, source, target, versions, block, where, base)
        except psycopg.OperationalError:
            if self._cancel.cancelled:
                raise VerifyCancelled() from None
            raise
        except psycopg.Error as exc:  # this table's problem (privileges, a bad filter): report it
            _rollback(pair)
            message = (exc.diag.message_primary or str(exc)).strip()
            log.info("verify %s failed: %s", base.display, message)
            result = replace(base, status="error", error=message)
        result = replace(result, seconds=time.monotonic() - started)
        self._emit(TableVerified(result))
        return result

    def _compare(self, pair: _Pair, run: _DatabaseRun, table: TableScope, source: _Relation | None,
                 target: _Relation | None, versions: tuple[int, int], block: int, where: str | None,
                 base: TableResult) -> TableResult:
        options = self.options
        if source is None:
            return replace(base, status="error", error="the table no longer exists on the source")
        inherited = source.kind == "p" and table.info.qualified not in run.covered_parents
        if source.kind == "p" and not inherited:
            return replace(base, status="skipped", notes=("partitioned table: its partitions are verified one by one",))
        if target is None:
            return replace(base, status="schema_differs", notes=("the table does not exist on the target",))
        missing_columns = [c for c in source.names if c not in target.names]
        extra_columns = [c for c in target.names if c not in source.names]
        if missing_columns or extra_columns:
            parts = []
            if missing_columns:
                parts.append("missing on the target: " + ", ".join(quote_ident(c) for c in missing_columns))
            if extra_columns:
                parts.append("only on the target: " + ", ".join(quote_ident(c) for c in extra_columns))
            return replace(base, status="schema_differs", notes=("columns differ; " + "; ".join(parts),))
        notes = [
            f"column {quote_ident(c.name)} is {c.type} on the source, {other.type} on the target "
            "(compared by text form)"
            for c in source.columns
            if (other := target.column(c.name)) is not None and other.type != c.type
        ]
        if not table.copies_rows:
            query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1000001) AS t").format(
                _table_sql(table, inherited=inherited))
            rows = int(pair.target.execute(query).fetchone()[0])  # type: ignore[index]
            if rows:
                shown = str(rows) if rows <= 1_000_000 else "over 1000000"
                notes.append(f"schema-only table holds {shown} row(s) on the target; none expected")
            return replace(base, status="differ" if rows else "match", method="schema only", target_rows=rows,
                           notes=tuple(notes), pinpointed=False)

        key = table.info.primary_key
        bounds = None
        key_column = source.column(key[0]) if len(key) == 1 else None
        target_key = target.column(key[0]) if len(key) == 1 else None
        table_sql = _table_sql(table, inherited=inherited)
        if key_column and target_key and key_column.hash_class == "int" and target_key.hash_class == "int":
            bounds = _key_bounds(pair, table_sql, key[0], where)
        shape = _shape(table, source, target, where, bounds, options, table_sql)
        if inherited:
            notes.append("partitioned table whose partitions are not selected: verified through the parent")
        timeout = min(options.recheck_timeout, _STUCK_TIMEOUT) if run.stuck else options.recheck_timeout
        waiter = _Waiter(pair, run.live if options.live else None, time.monotonic() + timeout, block)
        verifier = _TableVerifier(shape, pair, waiter, options, self._emit, versions)
        try:
            return self._compare_rows(shape, waiter, verifier, base, notes)
        finally:
            run.stuck = run.stuck or waiter.timed_out

    def _compare_rows(self, shape: _Shape, waiter: _Waiter, verifier: _TableVerifier, base: TableResult,
                      notes: list[str]) -> TableResult:
        options = self.options

        source_buckets, target_buckets, position = verifier.first_pass()
        result = replace(
            base, method=shape.method, buckets=len(set(source_buckets) | set(target_buckets)),
            source_rows=sum(c for c, _ in source_buckets.values()),
            target_rows=sum(c for c, _ in target_buckets.values()),
            pinpointed=shape.method != "row hash",
        )
        differing = _differing(source_buckets, target_buckets)
        persistent, changing = verifier.settle_buckets(source_buckets, target_buckets, position, differing)

        if shape.method == "row hash":
            notes.append("no primary key: rows are compared as a multiset (count and hash per bucket of row "
                         "hashes); differing rows cannot be named")
            if persistent:
                source_count = sum(source_buckets.get(b, _NO_ROWS)[0] for b in persistent)
                target_count = sum(target_buckets.get(b, _NO_ROWS)[0] for b in persistent)
                notes.append(f"{len(persistent)} of {result.buckets} bucket(s) differ ({source_count} row(s) "
                             f"there on the source, {target_count} on the target)")
            return self._finish(result, waiter, verifier, notes, status="differ" if persistent else "match",
                                differing_buckets=len(persistent), still_changing=len(changing))

        # Keyed tables: buckets still changing may hide a real difference too: name their rows.
        to_name = sorted(set(persistent) | set(changing))
        if not to_name:
            return self._finish(result, waiter, verifier, notes, status="match")
        tracked, overflow = verifier.differing_keys(source_buckets, target_buckets, to_name)
        real, still_changing = verifier.settle_keys(tracked)
        counts: dict[DifferenceKind, int] = dict(overflow)
        kinds = []
        for row_key, (source_hash, target_hash) in real.items():
            kind = kind_of(source_hash, target_hash)
            counts[kind] += 1
            kinds.append((_KIND_ORDER[kind], _key_order(row_key), kind, row_key))
        # Up to tracked_keys differ; only max_keys are reported: no need to sort them all.
        differences = [RowDifference(kind, row_key) for _, _, kind, row_key in heapq.nsmallest(options.max_keys, kinds)]
        if any(overflow.values()):
            notes.append(f"more than {options.tracked_keys} differing rows: the first {options.tracked_keys} were "
                         "kept (and re-checked when live), the rest are only counted")
        total = sum(counts.values())
        return self._finish(
            result, waiter, verifier, notes, status="differ" if total else "match",
            missing=counts["missing"], extra=counts["extra"], different=counts["different"],
            differences=tuple(differences), still_changing=still_changing,
        )

    def _finish(self, result: TableResult, waiter: _Waiter, verifier: _TableVerifier, notes: list[str],
                **changes: Any) -> TableResult:
        if changes.get("still_changing"):
            notes.append(f"{changes['still_changing']} row(s) or bucket(s) changed on the source at every "
                         "re-check: treated as changes in flight, not as differences")
        unsettled = waiter.timed_out and changes.get("status") == "differ"
        if unsettled:
            notes.append(f"the target did not catch up within {self.options.recheck_timeout:g} s: the "
                         "differences reported may be changes still in flight")
        return replace(result, resolved_in_flight=verifier.resolved, unsettled=unsettled, notes=tuple(notes),
                       listed_ranges=verifier.listed, dense_ranges=verifier.dense, **changes)


def _rollback(pair: _Pair) -> None:
    for conn in (pair.source, pair.target):
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
        except psycopg.Error:
            pass


# -- entry points -------------------------------------------------------------------------------------


def _publication_filters(endpoint: Endpoint, publication: str) -> dict[tuple[str, str], str]:
    """The row filters a publication really uses (PG15+), as the server prints them."""
    with connect(endpoint, application_name="pgtide-verify") as conn:
        if conn.info.server_version < 150000:
            return {}
        conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        pin_quoting(conn)
        rows = conn.execute(
            "SELECT schemaname, tablename, rowfilter FROM pg_catalog.pg_publication_tables "
            "WHERE pubname = %s AND rowfilter IS NOT NULL",
            [publication],
        ).fetchall()
    return {(schema, table): rowfilter for schema, table, rowfilter in rows}


def detect_live(source: Endpoint, target: Endpoint, database: str,
                names: ReplicationNames | None = None) -> LiveReplication | None:
    """The database's pgtide subscription on the target, when there is one."""
    names = names or replication_names(source, target, database)
    try:
        with connect(target.with_dbname(database), application_name="pgtide-verify") as conn:
            row = conn.execute(
                "SELECT subslotname FROM pg_catalog.pg_subscription WHERE subname = %s "
                "AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
                [names.subscription],
            ).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    return LiveReplication(slot=row[0] or names.slot, subscription=names.subscription)


def select_tables(scope: Scope, patterns: Sequence[str]) -> list[TableScope]:
    """The scope's tables, restricted to ``patterns`` (table, schema.table, db.table, db.schema.table)."""
    tables = [table for db in scope.databases for table in db.tables]
    if not patterns:
        return tables
    chosen: set[int] = set()
    for text in patterns:
        pattern = parse_table_pattern(text, what="--table name")
        found = [i for i, t in enumerate(tables) if _pattern_matches(pattern, t)]
        if not found:
            raise InputError(
                f"--table {text}: no such table among the migrated ones",
                "Name a table the selection includes: table, schema.table, db.table or db.schema.table "
                "(quote mixed-case names with double quotes).",
                title="Unknown table",
            )
        chosen.update(found)
    return [t for i, t in enumerate(tables) if i in chosen]


def _pattern_matches(pattern: TableRef | UnresolvedName, table: TableScope) -> bool:
    if isinstance(pattern, TableRef):
        return pattern.matches(table.database, table.schema, table.name)
    first, second = pattern.first, pattern.second
    if second != table.name:
        return False
    return first == table.schema or (first == table.database and table.schema == "public")


def verify_scope(
    scope: Scope,
    source: Endpoint,
    target: Endpoint,
    *,
    tables: Sequence[TableScope] | None = None,
    options: VerifyOptions | None = None,
    live: Mapping[str, LiveReplication | None] | None = None,
    on_event: EventCallback | None = None,
    verifier: Verifier | None = None,
    cancel: CancelToken | None = None,
) -> VerifyReport:
    """Verify the scope's tables (or ``tables``) of ``source`` against ``target``.

    Each database is compared with the database of the same name on the target. ``live``
    maps a database to the subscription keeping it in step (None: a static comparison).
    ``cancel``: stops the run with :class:`Cancelled` (ignored when ``verifier`` is given:
    that one's own token applies).
    """
    chosen = list(tables) if tables is not None else [t for db in scope.databases for t in db.tables]
    verifier = verifier or Verifier(options, on_event, cancel=cancel)
    runs = []
    for database in scope.databases:
        members = [t for t in chosen if t.database == database.name]
        if not members:
            continue
        replication = (live or {}).get(database.name)
        filters: dict[tuple[str, str], str] = {}
        if replication is not None and any(t.where for t in members):
            names = replication_names(source, target, database.name)
            filters = _publication_filters(source.with_dbname(database.name), names.publication)
        covered: set[tuple[str, str]] = set()
        for member in members:
            parent = member.info.partition_parent
            while parent is not None and parent not in covered:
                covered.add(parent)
                info = database.catalog.table(*parent)
                parent = info.partition_parent if info is not None else None
        runs.append(_DatabaseRun(database.name, source.with_dbname(database.name),
                                 target.with_dbname(database.name), members, replication, filters, covered))
    return verifier.run(runs)


def verify_plan(
    plan: Plan,
    *,
    tables: Sequence[str] = (),
    options: VerifyOptions | None = None,
    on_event: EventCallback | None = None,
    verifier: Verifier | None = None,
    cancel: CancelToken | None = None,
) -> VerifyReport:
    """Resolve the plan's selection on the source and verify every table it migrates.

    Databases with a pgtide subscription on the target are compared live (in-flight
    changes re-checked after the target caught up); the others statically.
    """
    options = options or (verifier.options if verifier else VerifyOptions())
    scope = build_scope(plan.source, plan.selection, replicate=False)
    chosen = select_tables(scope, tables)
    live: dict[str, LiveReplication | None] = {}
    if options.live:
        for database in sorted({t.database for t in chosen}):
            live[database] = detect_live(plan.source, plan.target, database)
    return verify_scope(scope, plan.source, plan.target, tables=chosen, options=options, live=live,
                        on_event=on_event, verifier=verifier, cancel=cancel)
