"""How a source table looks on the target, in either layout, and how its rows become target rows."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ..infra.errors import InputError
from ..replication.identity import digest
from .encode import document, documents, dumps, encode_id, encode_value
from .plan import ForeignPlan
from .source import Row, SourceTable
from .typed import Cast, casts_for, convert_columns, convert_row

JSONB_COLUMNS = ("id", "data", "_source_type")
#: PostgreSQL keeps this many bytes of a name (NAMEDATALEN - 1).
MAX_NAME = 63


def pg_name(*parts: str) -> str:
    """A name for an object pgtide makes (index, constraint, enum type) that fits PostgreSQL's
    63 bytes: kept whole when it fits, else cut with a digest so two long names stay apart."""
    name = "_".join(parts)
    if len(name.encode()) <= MAX_NAME:
        return name
    tail = "_" + digest(name, length=8)
    cut = name.encode()[: MAX_NAME - len(tail)].decode("utf-8", errors="ignore")
    return cut + tail


@dataclass(frozen=True)
class TargetTable:
    source: SourceTable
    layout: str
    kind: str
    schema: str
    casts: tuple[Cast, ...] = ()

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))

    @property
    def columns(self) -> tuple[str, ...]:
        return JSONB_COLUMNS if self.layout == "jsonb" else self.source.column_names

    @property
    def offset(self) -> int:
        """Where the columns start in a source row (SQLite's implicit rowid comes first)."""
        return 1 if self.source.implicit_rowid else 0

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The target's key: ``id`` in jsonb; the source key in typed (none for an implicit rowid)."""
        if self.layout == "jsonb":
            return ("id",)
        return () if self.source.implicit_rowid else self.source.key

    def row_id(self, row: Row, ordinal: int) -> str:
        """The jsonb layout's ``id`` of a source row."""
        source = self.source
        if source.document:
            return encode_id(row[0].get("_id"))
        if source.id_column is not None:
            if source.implicit_rowid and source.id_column == "rowid":
                return encode_id(row[0])
            return encode_id(row[self.offset + source.column_names.index(source.id_column)])
        if source.key:
            values = [row[self.offset + source.column_names.index(k)] for k in source.key]
            return encode_id(values[0]) if len(values) == 1 else json.dumps([encode_value(v) for v in values])
        return str(ordinal)

    def convert(self, row: Row, ordinal: int) -> tuple[Any, ...]:
        if self.layout == "jsonb":
            if self.source.document:
                data = encode_value(row[0])
            else:
                data = document(self.source.column_names, row[self.offset:])
            return (self.row_id(row, ordinal), dumps(data), self.kind)
        return convert_row(self.source, list(self.casts), row, offset=self.offset)

    def convert_columns(self, rows: Sequence[Row], first: int) -> list[Sequence[Any]]:
        """``convert`` over a batch whose first row has the ordinal ``first``, as columns in
        ``columns`` order (the copy's fast path: typed.convert_columns, encode.documents). The
        same values, except that a typed timestamptz value may be naive, meaning UTC."""
        if self.layout != "jsonb":
            return convert_columns(self.source, list(self.casts), rows, offset=self.offset)
        source = self.source
        if source.document:
            data = [dumps(encode_value(row[0])) for row in rows]
        else:
            names = source.column_names
            columns = list(zip(*rows, strict=True))[self.offset:] if rows else [() for _ in names]
            data = documents(names, columns, len(rows))
        return [self.row_ids(rows, first), data, [self.kind] * len(rows)]

    def row_ids(self, rows: Sequence[Row], first: int) -> Sequence[str]:
        """``row_id`` of each row of a batch."""
        source = self.source
        if source.id_column is not None and not source.document and rows:
            at = 0 if source.implicit_rowid and source.id_column == "rowid" else \
                self.offset + source.column_names.index(source.id_column)
            values = [row[at] for row in rows]
            if set(map(type, values)) <= {int, str, bool}:
                return list(map(str, values))  # encode_id of these is str(value)
            return [encode_id(v) for v in values]
        return [self.row_id(row, ordinal) for ordinal, row in enumerate(rows, first)]

    def key_of(self, row: Row) -> tuple[Any, ...]:
        """The key the reader orders by (for resuming past a row)."""
        if self.source.document:
            return (row[0].get("_id"),)
        if self.source.implicit_rowid:
            return (row[0],)
        return tuple(row[self.offset + self.source.column_names.index(k)] for k in self.source.key)

    def target_key(self, row: Row, ordinal: int = 0) -> tuple[Any, ...]:
        """The target key values of a source row (what apply and verify match on)."""
        if self.layout == "jsonb":
            return (self.row_id(row, ordinal),)
        converted = self.convert(row, ordinal)
        return tuple(converted[self.source.column_names.index(k)] for k in self.key_columns)

    # -- DDL ---------------------------------------------------------------------------------

    def create_statements(self) -> Iterator[sql.Composed]:
        if self.layout == "jsonb":
            yield sql.SQL("CREATE TABLE {} (id text NOT NULL, data jsonb NOT NULL, _source_type text NOT NULL, "
                          "_migrated_at timestamp DEFAULT now())").format(self.ident)
            return
        for cast in self.casts:
            if cast.enum_values:
                type_name = cast.pg_type.removesuffix("[]")
                yield sql.SQL("DROP TYPE IF EXISTS {}.{}").format(sql.Identifier(self.schema), sql.Identifier(type_name))
                yield sql.SQL("CREATE TYPE {}.{} AS ENUM ({})").format(
                    sql.Identifier(self.schema), sql.Identifier(type_name),
                    sql.SQL(", ").join(sql.Literal(v) for v in cast.enum_values))
        columns: list[sql.Composable] = []
        for column, cast in zip(self.source.columns, self.casts, strict=True):
            if cast.enum_values:
                suffix = "[]" if cast.pg_type.endswith("[]") else ""
                pg_type: sql.Composable = sql.SQL("{}.{}" + suffix).format(
                    sql.Identifier(self.schema), sql.Identifier(cast.pg_type.removesuffix("[]")))
            else:
                # A fixed rule's text, or the target server's own format_type() of an override.
                pg_type = sql.SQL(cast.pg_type)  # type: ignore[arg-type]
            parts: list[sql.Composable] = [sql.Identifier(column.name), pg_type]
            if cast.identity:
                parts.append(sql.SQL("GENERATED BY DEFAULT AS IDENTITY"))
            # A zero date becomes NULL, so a NOT NULL date column cannot keep its constraint.
            zero_dates = self.kind == "mysql" and column.base in ("date", "datetime", "timestamp")
            if not column.nullable and not zero_dates:
                parts.append(sql.SQL("NOT NULL"))
            columns.append(sql.SQL(" ").join(parts))
        yield sql.SQL("CREATE TABLE {} ({})").format(self.ident, sql.SQL(", ").join(columns))

    def key_statements(self) -> Iterator[sql.Composed]:
        """The primary key, then the other indexes; built after the data, as pg_restore does."""
        if self.key_columns:
            yield sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                self.ident, sql.Identifier(pg_name(self.name, "pkey")),
                sql.SQL(", ").join(sql.Identifier(c) for c in self.key_columns))
        if self.layout == "jsonb":
            yield sql.SQL("CREATE INDEX {} ON {} USING gin (data)").format(
                sql.Identifier(pg_name(self.name, "data", "idx")), self.ident)
            yield sql.SQL("CREATE INDEX {} ON {} (_migrated_at)").format(
                sql.Identifier(pg_name(self.name, "migrated", "at", "idx")), self.ident)
            return
        for index in self.source.indexes:
            if index.unique and tuple(index.columns) == tuple(self.key_columns):
                continue
            yield sql.SQL("CREATE {}INDEX {} ON {} ({})").format(
                sql.SQL("UNIQUE ") if index.unique else sql.SQL(""),
                sql.Identifier(pg_name(self.name, index.name)), self.ident,
                sql.SQL(", ").join(sql.Identifier(c) for c in index.columns))

    def foreign_key_statements(self, migrated: set[str]) -> Iterator[sql.Composed]:
        if self.layout == "jsonb":
            return
        for fk in self.source.foreign_keys:
            if fk.ref_table not in migrated:
                continue
            rules = []
            for clause, rule in (("ON DELETE", fk.on_delete), ("ON UPDATE", fk.on_update)):
                rule = rule.upper().strip()
                if rule in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"):
                    rules.append(sql.SQL(f"{clause} {rule}"))  # type: ignore[arg-type]  # from a fixed list
            yield sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}.{} ({}) {}").format(
                self.ident, sql.Identifier(pg_name(self.name, fk.name)),
                sql.SQL(", ").join(sql.Identifier(c) for c in fk.columns),
                sql.Identifier(self.schema), sql.Identifier(fk.ref_table),
                sql.SQL(", ").join(sql.Identifier(c) for c in fk.ref_columns), sql.SQL(" ").join(rules))


def target_tables(plan: ForeignPlan, tables: list[SourceTable], casts: dict[str, str]) -> list[TargetTable]:
    """Each picked table's target form; InputError for a name PostgreSQL would cut."""
    built: list[TargetTable] = []
    for table in tables:
        if len(table.name.encode()) > MAX_NAME:
            raise InputError(f"the table name {table.name[:40]!r}… is longer than PostgreSQL's 63 bytes",
                             "Leave the table out (--exclude-tables) or rename it on the source.",
                             title="Name too long")
        chosen = tuple(casts_for(plan.source.kind, table, casts)) if plan.layout == "typed" else ()
        built.append(TargetTable(table, plan.layout, plan.source.kind, plan.target_schema, chosen))
    return built
