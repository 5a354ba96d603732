"""Schema drift: what changed in the source's catalog (or the target's) since the copy.

PostgreSQL's logical replication carries rows, never DDL. A column added on the source
stops the apply worker at the next change that carries it ("logical replication target
relation ... is missing replicated column"); a new table in a migrated schema is silently
left behind. This module compares, per database, a fingerprint of both catalogs — one
query per side, whatever the number of tables — and classifies each difference:

- additive on the target (a column, an index, a constraint, an enum label, a default, a
  NOT NULL): the exact statement, applied by ``pgtide schema apply``;
- a new source table in a migrated schema: created on the target, added to the
  publication and copied by the subscription itself (REFRESH PUBLICATION with copy_data:
  gap-free for that table) — ``pgtide schema apply`` too;
- a type change, a dropped column, a changed generated column: the rows already on the
  target are wrong, so the table is named for a re-copy (``pgtide sync --recopy TABLE``).

The fingerprint reads the server's own deparsed text (``format_type``, ``pg_get_expr``,
``pg_get_constraintdef``, ``pg_get_indexdef``) under ``search_path = pg_catalog``, so
every name in it is schema-qualified and the statements built from it mean the same on
the target. That text is what pg_dump itself emits; no user input becomes SQL here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..model.selection import NameIndex, Selection, format_qualified_name

Server = Literal["source", "target"]


@dataclass(frozen=True)
class Statement:
    """One statement pgtide would run, where it runs, and why."""

    server: Server
    database: str
    sql: str
    why: str = ""


@dataclass(frozen=True)
class Difference:
    #: column_missing, column_dropped, type_changed, generated_changed, not_null, default,
    #: constraint_missing, constraint_extra, constraint_differs, index_missing, index_extra,
    #: enum_labels, new_table, dropped_on_source, missing_on_target
    kind: str
    detail: str
    #: What ``schema apply`` runs for it (empty: nothing pgtide can add safely).
    statements: tuple[Statement, ...] = ()
    #: The rows already on the target are wrong for the new definition: re-copy the table.
    recopy: bool = False


@dataclass(frozen=True)
class TableDrift:
    schema: str
    name: str
    differences: tuple[Difference, ...]

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def display(self) -> str:
        return format_qualified_name(self.qualified)

    @property
    def needs_recopy(self) -> bool:
        return any(d.recopy for d in self.differences)

    @property
    def new_table(self) -> bool:
        return any(d.kind == "new_table" for d in self.differences)

    @property
    def action(self) -> str:
        """What to do: 'recopy', 'apply' (statements fix it) or 'review' (nothing pgtide adds)."""
        if self.needs_recopy:
            return "recopy"
        if any(d.statements for d in self.differences):
            return "apply"
        return "review"

    def summary(self) -> str:
        return "; ".join(d.detail for d in self.differences)


@dataclass(frozen=True)
class DriftReport:
    database: str
    checked_at: datetime | None
    tables: tuple[TableDrift, ...] = ()
    #: Why drift could not be read (a permission, a timeout); None when it was.
    error: str | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.tables)

    def table(self, schema: str, name: str) -> TableDrift | None:
        return next((t for t in self.tables if t.qualified == (schema, name)), None)

    @property
    def statements(self) -> tuple[Statement, ...]:
        """Every additive statement, in order, each once (an enum shared by tables is altered once)."""
        seen: set[tuple[str, str]] = set()
        out = []
        for table in self.tables:
            for difference in table.differences:
                for statement in difference.statements:
                    key = (statement.server, statement.sql)
                    if key not in seen:
                        seen.add(key)
                        out.append(statement)
        return tuple(out)

    @property
    def recopy_tables(self) -> tuple[str, ...]:
        return tuple(t.display for t in self.tables if t.needs_recopy)


# -- the fingerprint query ---------------------------------------------------------------------

# One row per table of the migrated schemas. ``side`` decides which tables: on the source,
# every table of a schema that holds a published table (the publication is found by name);
# on the target, every table of the schemas named.
_FINGERPRINT_SQL = """
WITH published AS (
    SELECT pr.prrelid AS oid FROM pg_catalog.pg_publication_rel pr
    JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = %(publication)s
), subscribed AS (
    SELECT r.srrelid AS oid FROM pg_catalog.pg_subscription_rel r
    JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid WHERE s.subname = %(subscription)s
), wanted AS (
    SELECT c.relnamespace AS oid FROM published JOIN pg_catalog.pg_class c ON c.oid = published.oid
    UNION
    SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
), tables AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relnamespace IN (SELECT oid FROM wanted)
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = 'pg_catalog.pg_class'::regclass
                      AND x.objid = c.oid AND x.deptype = 'e')
), enums AS (
    SELECT e.enumtypid, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
    FROM pg_catalog.pg_enum e GROUP BY e.enumtypid
), cols AS (
    -- One pass over the tables' columns (a correlated subquery per table costs seconds at 10k tables).
    SELECT a.attrelid, json_agg(json_build_array(
               a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated::text,
               a.attidentity::text, pg_catalog.pg_get_expr(d.adbin, d.adrelid), en.labels, tn.nspname, t.typname)
               ORDER BY a.attnum) AS columns
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
    LEFT JOIN enums en ON en.enumtypid = a.atttypid
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid IN (SELECT oid FROM tables) AND a.attnum > 0 AND NOT a.attisdropped
    GROUP BY a.attrelid
), cons AS (
    SELECT co.conrelid, json_agg(json_build_array(co.conname, co.contype::text,
                                                  pg_catalog.pg_get_constraintdef(co.oid)) ORDER BY co.conname) AS defs
    FROM pg_catalog.pg_constraint co
    WHERE co.conrelid IN (SELECT oid FROM tables) AND co.contype <> 'n' GROUP BY co.conrelid
), idx AS (
    SELECT i.indrelid, json_agg(pg_catalog.pg_get_indexdef(i.indexrelid) ORDER BY ic.relname) AS defs
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    -- Indexes a constraint owns (primary key, unique, exclusion) are compared as that constraint.
    WHERE i.indrelid IN (SELECT oid FROM tables)
      AND i.indexrelid NOT IN (SELECT k.conindid FROM pg_catalog.pg_constraint k
                               WHERE k.contype IN ('p', 'u', 'x') AND k.conindid <> 0)
    GROUP BY i.indrelid
)
SELECT tables.nspname, tables.relname, tables.relkind::text, tables.relpersistence::text,
       tables.oid IN (SELECT oid FROM published), tables.oid IN (SELECT oid FROM subscribed),
       coalesce(cols.columns, '[]'), coalesce(cons.defs, '[]'), coalesce(idx.defs, '[]')
FROM tables
LEFT JOIN cols ON cols.attrelid = tables.oid
LEFT JOIN cons ON cons.conrelid = tables.oid
LEFT JOIN idx ON idx.indrelid = tables.oid
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    generated: str
    identity: str
    default: str | None
    enum_labels: tuple[str, ...] | None
    type_schema: str
    type_name: str


@dataclass(frozen=True)
class TableFingerprint:
    schema: str
    name: str
    kind: str
    persistence: str
    published: bool
    subscribed: bool
    columns: tuple[Column, ...]
    #: name -> (contype, definition)
    constraints: Mapping[str, tuple[str, str]]
    indexes: tuple[str, ...]

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def read_fingerprints(conn: psycopg.Connection[Any], *, publication: str | None = None,
                      subscription: str | None = None, schemas: Sequence[str] = ()) -> list[TableFingerprint]:
    """One query: every table of the migrated schemas, fingerprinted (see module docstring)."""
    with conn.transaction():
        # Deparsed names come out schema-qualified, so they mean the same on either server.
        conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        # The planner's row estimates for catalog joins are wild enough to trigger JIT, whose
        # compilation alone took seconds at 10,000 tables; the query itself runs in well under one.
        conn.execute("SELECT pg_catalog.set_config('jit', 'off', true)")
        rows = conn.execute(_FINGERPRINT_SQL, {"publication": publication, "subscription": subscription,
                                               "schemas": list(schemas)}).fetchall()
    return [_fingerprint(row) for row in rows]


def _fingerprint(row: Sequence[Any]) -> TableFingerprint:
    schema, name, kind, persistence, published, subscribed, columns, constraints, indexes = row
    return TableFingerprint(
        schema=schema, name=name, kind=kind, persistence=persistence, published=bool(published),
        subscribed=bool(subscribed),
        columns=tuple(Column(c[0], c[1], bool(c[2]), c[3] or "", c[4] or "", c[5],
                             tuple(c[6]) if c[6] is not None else None, c[7], c[8]) for c in columns),
        constraints={c[0]: (c[1], c[2]) for c in constraints},
        indexes=tuple(indexes),
    )


# -- comparing -----------------------------------------------------------------------------------

#: A default whose value does not depend on when or where it is computed: the target adds
#: the column with the very value the source filled its existing rows with.
_CONSTANT_DEFAULT = re.compile(
    r"^(NULL|true|false|-?\d+(\.\d+)?|'(?:[^']|'')*')(::[\w .\"\[\]()]+)*$", re.IGNORECASE)


def _ident(*parts: str) -> str:
    return sql.Identifier(*parts).as_string()


def _column_ddl(column: Column) -> str:
    text = f"{_ident(column.name)} {column.type}"
    if column.generated == "s" and column.default is not None:
        text += f" GENERATED ALWAYS AS ({column.default}) STORED"
    elif column.default is not None:
        text += f" DEFAULT {column.default}"
    if column.not_null and not column.identity:
        text += " NOT NULL"
    return text


def compare_table(database: str, source: TableFingerprint, target: TableFingerprint) -> list[Difference]:
    """Every difference between one table's two fingerprints, each with its fix."""
    table = _ident(source.schema, source.name)
    out: list[Difference] = []

    def on_target(text: str, why: str = "") -> Statement:
        return Statement("target", database, text, why)

    for column in source.columns:
        other = target.column(column.name)
        shown = f"column {_ident(column.name)}"
        if other is None:
            constant = column.default is None or bool(_CONSTANT_DEFAULT.match(column.default))
            if column.identity or column.generated:
                out.append(Difference("column_missing", f"{shown} ({column.type}) is missing on the target; its "
                                      "values are computed per row on the source",
                                      (on_target(f"ALTER TABLE {table} ADD COLUMN {_column_ddl(column)}"),),
                                      recopy=bool(column.identity)))
            elif constant:
                out.append(Difference("column_missing", f"{shown} ({column.type}) is missing on the target",
                                      (on_target(f"ALTER TABLE {table} ADD COLUMN {_column_ddl(column)}"),)))
            else:
                # Existing source rows got a value computed there (now(), nextval()...): the
                # target cannot compute the same ones, so the column comes without rows' values.
                bare = Column(column.name, column.type, False, "", "", None, None, "", "")
                statements = [on_target(f"ALTER TABLE {table} ADD COLUMN {_column_ddl(bare)}"),
                              on_target(f"ALTER TABLE {table} ALTER COLUMN {_ident(column.name)} "
                                        f"SET DEFAULT {column.default}")]
                out.append(Difference("column_missing", f"{shown} ({column.type} DEFAULT {column.default}) is "
                                      "missing on the target; existing rows' values need a re-copy",
                                      tuple(statements), recopy=True))
            continue
        if other.type != column.type:
            out.append(Difference("type_changed", f"{shown} is {column.type} on the source, {other.type} on the "
                                  "target", recopy=True))
            continue
        if (other.generated, other.default if other.generated else None) != (
                column.generated, column.default if column.generated else None):
            out.append(Difference("generated_changed", f"{shown}: generated differently on the two sides",
                                  recopy=True))
            continue
        if column.enum_labels is not None and other.enum_labels is not None and column.enum_labels != other.enum_labels:
            out.append(_enum_difference(database, column, other))
        if column.not_null != other.not_null:
            verb = "SET" if column.not_null else "DROP"
            side = "source" if column.not_null else "target"
            out.append(Difference("not_null", f"{shown} is NOT NULL on the {side} only",
                                  (on_target(f"ALTER TABLE {table} ALTER COLUMN {_ident(column.name)} {verb} "
                                             "NOT NULL"),)))
        if not column.generated and column.default != other.default:
            statement = (f"ALTER TABLE {table} ALTER COLUMN {_ident(column.name)} "
                         + (f"SET DEFAULT {column.default}" if column.default is not None else "DROP DEFAULT"))
            out.append(Difference("default", f"{shown}: default {column.default or 'none'} on the source, "
                                  f"{other.default or 'none'} on the target", (on_target(statement),)))
    for column in target.columns:
        if source.column(column.name) is None:
            out.append(Difference("column_dropped", f"column {_ident(column.name)} was dropped on the source (the "
                                  "target still has it)", recopy=True))
    for name, (_kind, definition) in source.constraints.items():
        theirs = target.constraints.get(name)
        if theirs is None:
            out.append(Difference("constraint_missing", f"constraint {_ident(name)} is missing on the target",
                                  (on_target(f"ALTER TABLE {table} ADD CONSTRAINT {_ident(name)} {definition}"),)))
        elif theirs[1] != definition:
            out.append(Difference("constraint_differs", f"constraint {_ident(name)}: {definition} on the source, "
                                  f"{theirs[1]} on the target"))
    for name in target.constraints:
        if name not in source.constraints:
            out.append(Difference("constraint_extra", f"constraint {_ident(name)} exists on the target only (dropped "
                                  "on the source?): changes the source accepts may fail to apply"))
    for index in source.indexes:
        if index not in target.indexes:
            out.append(Difference("index_missing", f"index missing on the target: {index}", (on_target(index),)))
    for index in target.indexes:
        if index not in source.indexes:
            out.append(Difference("index_extra", f"index on the target only: {index}"))
    return out


def _enum_difference(database: str, column: Column, other: Column) -> Difference:
    source_labels = column.enum_labels or ()
    target_labels = set(other.enum_labels or ())
    type_name = _ident(column.type_schema, column.type_name)
    statements = []
    if set(source_labels) >= target_labels:
        for position, label in enumerate(source_labels):
            if label in target_labels:
                continue
            # ADD VALUE keeps the source's order: after the label before it, else first.
            where = (f" AFTER {sql.Literal(source_labels[position - 1]).as_string()}" if position
                     else (f" BEFORE {sql.Literal(source_labels[1]).as_string()}" if len(source_labels) > 1 else ""))
            statements.append(Statement("target", database, f"ALTER TYPE {type_name} ADD VALUE IF NOT EXISTS "
                                        f"{sql.Literal(label).as_string()}{where}"))
            target_labels.add(label)
    added = [label for label in source_labels if label not in set(other.enum_labels or ())]
    detail = f"enum {type_name} has label(s) {', '.join(repr(a) for a in added)} on the source only" if added else \
        f"enum {type_name} has different labels on the two sides"
    return Difference("enum_labels", detail, tuple(statements), recopy=not statements)


def new_table_statements(database: str, table: tuple[str, str], publication: str,
                         subscription: str) -> tuple[Statement, ...]:
    """What ``schema apply`` does for a table created on the source after the copy."""
    ident = _ident(*table)
    return (
        Statement("target", database, f"-- the definition of {ident}, dumped from the source (pg_dump --schema-only "
                  f"--table {ident}) and restored on the target", "pg_dump"),
        Statement("source", database, f"ALTER PUBLICATION {_ident(publication)} ADD TABLE {ident}"),
        Statement("target", database, f"ALTER SUBSCRIPTION {_ident(subscription)} REFRESH PUBLICATION "
                  "WITH (copy_data = true)", "the subscription copies the table under its own snapshot, then "
                  "streams its changes: nothing missed"),
    )


IncludeTable = Callable[[str, str], bool]


def compare(database: str, source: Sequence[TableFingerprint], target: Sequence[TableFingerprint], *,
            publication: str, subscription: str, include: IncludeTable | None = None,
            checked_at: datetime | None = None) -> DriftReport:
    """Both sides' fingerprints as a DriftReport (pure)."""
    theirs = {t.qualified: t for t in target}
    ours = {t.qualified: t for t in source}
    tables: list[TableDrift] = []
    for table in source:
        other = theirs.get(table.qualified)
        if other is None:
            if table.published:
                tables.append(TableDrift(table.schema, table.name, (
                    Difference("missing_on_target", "published, but the table does not exist on the target",
                               recopy=True),)))
            elif table.persistence == "p" and table.kind == "r" and (include is None or include(*table.qualified)):
                tables.append(TableDrift(table.schema, table.name, (Difference(
                    "new_table", "created on the source after the copy: not on the target, not published",
                    new_table_statements(database, table.qualified, publication, subscription)),)))
            continue
        differences = compare_table(database, table, other)
        if differences:
            tables.append(TableDrift(table.schema, table.name, tuple(differences)))
    for table in target:
        if table.qualified not in ours and table.subscribed:
            tables.append(TableDrift(table.schema, table.name, (Difference(
                "dropped_on_source", "dropped on the source; the target still has it (drop it there at cutover, "
                "or keep it)"),)))
    return DriftReport(database, checked_at, tuple(tables))


def selection_filter(selection: Selection, database: str, schemas: Sequence[str]) -> IncludeTable:
    """Whether the migration's selection takes a table (so a new table it excludes is no drift)."""
    try:
        resolved = selection.resolve(NameIndex(frozenset({database}), {database: frozenset(schemas)}))
    except Exception:  # an ambiguous two-part name: every new table is worth showing
        return lambda schema, name: True

    def include(schema: str, name: str) -> bool:
        return resolved.treatment(database, schema, name).mode != "excluded"

    return include


@dataclass
class DriftCache:
    """The last drift answer per database and when it was read (drift is read at a low rate)."""

    reports: dict[str, DriftReport] = field(default_factory=dict)
    read_at: dict[str, float] = field(default_factory=dict)
    #: How long the last reading took (wall seconds), per database.
    seconds: dict[str, float] = field(default_factory=dict)


def recopy_statements(source: TableFingerprint, target: TableFingerprint) -> list[str]:
    """Statements that give an *emptied* target table the source's columns (types, generated
    expressions, dropped columns), before the subscription copies it again."""
    table = _ident(source.schema, source.name)
    out: list[str] = []
    for column in source.columns:
        other = target.column(column.name)
        name = _ident(column.name)
        if other is None:
            out.append(f"ALTER TABLE {table} ADD COLUMN {_column_ddl(column)}")
        elif (other.generated, other.default if other.generated else None) != (
                column.generated, column.default if column.generated else None):
            out += [f"ALTER TABLE {table} DROP COLUMN {name}", f"ALTER TABLE {table} ADD COLUMN {_column_ddl(column)}"]
        elif other.type != column.type:
            # The table is empty: no value needs converting, whatever casts exist.
            if other.default is not None:
                out.append(f"ALTER TABLE {table} ALTER COLUMN {name} DROP DEFAULT")
            out.append(f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {column.type} USING NULL")
            if column.default is not None:
                out.append(f"ALTER TABLE {table} ALTER COLUMN {name} SET DEFAULT {column.default}")
    for column in target.columns:
        if source.column(column.name) is None:
            out.append(f"ALTER TABLE {table} DROP COLUMN {_ident(column.name)}")
    return out
