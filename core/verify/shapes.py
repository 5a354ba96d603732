"""How one table is compared: its columns' hash classes, the row and key hashes, the bucketing
(SQL builders).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..catalog.predicate import QUOTING_SETTINGS, deparsed
from ..catalog.scope import TableScope
from .results import Method, VerifyOptions

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


_INT8_SAFE = 1 << 61


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



def _table_sql(table: TableScope, *, inherited: bool) -> sql.Composable:
    """``ONLY schema.table``: each table's own rows (children are verified on their own),
    unless its partitions are not part of the run (then through the partitioned parent)."""
    ident = sql.Identifier(table.schema, table.name)
    return ident if inherited else sql.SQL("ONLY {}").format(ident)
