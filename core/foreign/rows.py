"""Rows in a comparable form: what verify and the refresh hash on both sides.

A source row is converted exactly as the copy converts it (layout.py), a target row is read
back through psycopg, and both are reduced to one canonical text per row before hashing, so
representation differences that are not data differences (numeric scale, float4 rounding,
jsonb key order, time zones) do not show up as differences.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import struct
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from .encode import canonical
from .layout import TargetTable
from .source import SnapshotReader

Key = tuple[Any, ...]


def _norm(value: Any, pg_type: str) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if pg_type == "real" and isinstance(value, (int, float)):
        return struct.unpack("f", struct.pack("f", float(value)))[0]
    if isinstance(value, Decimal):
        return str(value.normalize()) if value.is_finite() else str(value)
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return value.isoformat() if not isinstance(value, dt.timedelta) else value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if pg_type in ("jsonb", "json") and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, (list, tuple)):
        return [_norm(v, pg_type.removesuffix("[]")) for v in value]
    return value


def digest(table: TargetTable, values: tuple[Any, ...]) -> bytes:
    """A row's hash, from its target-form values (what ``TargetTable.convert`` gives, or what
    the target returns for ``TargetTable.columns``)."""
    if table.layout == "jsonb":
        data = values[1]
        if isinstance(data, str):
            data = json.loads(data)
        text = canonical([values[0], data])
    else:
        text = canonical([_norm(v, c.pg_type) for v, c in zip(values, table.casts, strict=True)])
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def key_of_values(table: TargetTable, values: tuple[Any, ...]) -> Key:
    """The target key of a target-form row."""
    if table.layout == "jsonb":
        return (values[0],)
    names = table.source.column_names
    return tuple(_norm(values[names.index(k)], "") for k in table.key_columns)


def source_values(snapshot: SnapshotReader, table: TargetTable, where: str | None) -> Iterator[tuple[Any, ...]]:
    """The source table's rows in target form (as the copy converts them), in key order."""
    ordinal = 0
    for batch in snapshot.rows(table.source, where=where):
        for row in batch:
            ordinal += 1
            yield table.convert(row, ordinal)


def target_rows(conn: psycopg.Connection[Any], table: TargetTable, *, batch: int = 10000) -> Iterator[tuple[Any, ...]]:
    """The target table's rows in ``TargetTable.columns`` order, through a server-side cursor."""
    def column(name: str) -> sql.Composable:
        cast = next((c for c in table.casts if c.column == name), None)
        # psycopg knows no array type of an enum made here: read those as text[] (a list).
        if cast is not None and cast.enum_values and cast.pg_type.endswith("[]"):
            return sql.SQL("{}::text[]").format(sql.Identifier(name))
        return sql.Identifier(name)

    columns = sql.SQL(", ").join(column(c) for c in table.columns)
    with conn.transaction(), conn.cursor(name="pgtide_foreign_rows") as cursor:
        cursor.itersize = batch
        cursor.execute(sql.SQL("SELECT {} FROM {}").format(columns, table.ident))
        yield from cursor


def target_digests(conn: psycopg.Connection[Any], table: TargetTable) -> dict[Key, bytes]:
    """key → row hash of every target row (one side held in memory: 16 bytes and the key per row)."""
    return {key_of_values(table, tuple(row)): digest(table, tuple(row)) for row in target_rows(conn, table)}
