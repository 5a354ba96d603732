"""A Selection checked against the real source: which tables move, and exactly how.

``build_scope`` turns the user's rules into a list of concrete tables, each with the one
SQL predicate that both the copy and the publication will use. Everything that can be
wrong with the user's rules is found here, before anything is copied:

- names that do not exist (with the closest real name suggested),
- predicates the server rejects (checked by the server with EXPLAIN in a read-only
  transaction with a statement timeout — never executed),
- predicates a publication cannot carry (checked by creating the publication inside a
  transaction that is rolled back: CREATE PUBLICATION is transactional),
- row filters on columns outside the replica identity (UPDATE/DELETE on the *source* would
  start failing once the publication exists),
- filtered tables whose foreign-key neighbours are left out (TRUNCATE ... CASCADE and FK
  checks on the target would fail or empty tables nobody asked about).

Time windows are resolved once, on the source server's clock, to a literal timestamp that
is kept in the scope: the copy and the publication filter use exactly the same cut.
"""

from __future__ import annotations

import difflib
import json
import re
import secrets as random_names
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError
from ..model.selection import (
    DatabaseRule,
    NameIndex,
    Selection,
    TableRef,
    TimeFilter,
    format_qualified_name,
    quote_ident,
)
from .discovery import (
    DatabaseCatalog,
    ServerCatalog,
    TableInfo,
    base_type,
    discover_database,
    list_databases,
)
from .predicate import (
    FILTER_TITLE,
    canonical_predicate,
    deparsed,
    execute_parsed,
    limit_transaction,
    pin_quoting,
    rejection_for,
)

#: Publications that only ever exist inside a rolled-back check transaction start with this.
CHECK_PUBLICATION_PREFIX = "pgtide_check_"

_FILTER_TITLE = FILTER_TITLE


@dataclass(frozen=True)
class TableScope:
    """One table that is part of the migration."""

    database: str
    info: TableInfo
    mode: Literal["full", "schema_only"]
    #: The user's predicate, as given (row filters).
    row_filter: str | None = None
    time_filter: TimeFilter | None = None
    #: The time filter's cut as a SQL literal, resolved once on the source's clock.
    time_cutoff: str | None = None
    #: The one predicate used by both the copy and the publication (None: all rows).
    where: str | None = None
    #: Columns the predicate reads (from the server's own parse of it).
    filter_columns: tuple[str, ...] = ()
    #: Planner estimate of the rows the predicate keeps (None when unfiltered or unknown).
    estimated_rows: int | None = None
    rules: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def schema(self) -> str:
        return self.info.schema

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def display(self) -> str:
        return f"{quote_ident(self.database)}.{format_qualified_name(self.info.qualified)}"

    @property
    def copies_rows(self) -> bool:
        return self.mode == "full"

    @property
    def estimated_bytes(self) -> int:
        """Bytes this table will move: nothing for schema-only, a share for filtered tables."""
        if not self.copies_rows or self.info.is_partitioned:
            return 0
        if self.where is None or self.estimated_rows is None:
            return self.info.total_bytes
        total_rows = self.info.row_estimate
        if not total_rows:
            return self.info.total_bytes
        share = min(1.0, self.estimated_rows / total_rows)
        return int(self.info.total_bytes * share)


@dataclass(frozen=True)
class ExcludedTable:
    schema: str
    name: str
    reason: str


@dataclass(frozen=True)
class DatabaseScope:
    name: str
    catalog: DatabaseCatalog
    tables: tuple[TableScope, ...]
    excluded: tuple[ExcludedTable, ...]

    def table(self, schema: str, name: str) -> TableScope | None:
        return next((t for t in self.tables if t.info.qualified == (schema, name)), None)

    @property
    def estimated_bytes(self) -> int:
        return sum(table.estimated_bytes for table in self.tables)


@dataclass(frozen=True)
class Scope:
    server: ServerCatalog
    selection: Selection
    databases: tuple[DatabaseScope, ...]
    #: The source server's clock when time windows were resolved.
    resolved_at: datetime
    notes: tuple[str, ...] = field(default=())

    def database(self, name: str) -> DatabaseScope | None:
        return next((db for db in self.databases if db.name == name), None)

    @property
    def estimated_bytes(self) -> int:
        return sum(db.estimated_bytes for db in self.databases)


# -- names --------------------------------------------------------------------------------


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    candidates = list(candidates)
    folded = [c for c in candidates if c.lower() == name.lower()]
    if folded:
        return folded[0]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _check_databases(selection: Selection, server: ServerCatalog) -> list[str]:
    known = [db.name for db in server.databases]
    skipped = {s.name: s.reason for s in server.skipped}
    notes: list[str] = []
    for rule in selection.include_databases:
        if rule.name in known:
            continue
        if rule.name in skipped:
            raise InputError(
                f"database {quote_ident(rule.name)} ({rule.origin or 'include list'}) cannot be migrated: "
                f"{skipped[rule.name]}",
                "Remove it from the databases to include.",
                title="Unknown database",
            )
        suggestion = _suggest(rule.name, known)
        raise InputError(
            f"there is no database {quote_ident(rule.name)} on the source ({rule.origin or 'include list'})",
            f"Did you mean {quote_ident(suggestion)}?" if suggestion
            else f"Databases on the source: {', '.join(quote_ident(n) for n in known) or 'none'}.",
            title="Unknown database",
        )
    for rule in selection.exclude_databases:
        if rule.name not in known and rule.name not in skipped:
            notes.append(f"excluded database {quote_ident(rule.name)} does not exist on the source")
    return notes


def _check_rule_targets(selection: Selection, catalogs: dict[str, DatabaseCatalog]) -> None:
    """Every rule must name a real table (and a real time column) in a selected database."""
    for rule in selection.rules:
        target = rule.target
        assert isinstance(target, TableRef)
        if target.database is not None and target.database not in catalogs:
            continue  # the rule's database is not selected: Selection.notes() says so
        places = [target.database] if target.database is not None else list(catalogs)
        found = [db for db in places if catalogs[db].table(target.schema, target.table) is not None]
        if not found:
            all_names = {
                format_qualified_name(t.qualified): t.qualified for db in places for t in catalogs[db].tables
            }
            suggestion = _suggest(format_qualified_name((target.schema, target.table)), all_names)
            where = f"database {quote_ident(target.database)}" if target.database else "any selected database"
            raise InputError(
                f"{rule.describe()}: there is no table {format_qualified_name((target.schema, target.table))} "
                f"in {where}",
                f"Did you mean {suggestion}?" if suggestion else "Check the schema and table name (quote mixed-case "
                "names with double quotes, e.g. '\"MyTable\"').",
                title="Unknown table",
            )
        if rule.time_filter is None:
            continue
        column = rule.time_filter.column
        for db in found:
            info = catalogs[db].table(target.schema, target.table)
            assert info is not None
            col = info.column(column)
            time_columns = [c.name for c in info.time_columns]
            if col is None or col.name not in time_columns:
                problem = "has no column" if col is None else f"column is of type {col.type}, not a timestamp or date:"
                suggestion = _suggest(column, time_columns)
                raise InputError(
                    f"{rule.describe()}: table {format_qualified_name(info.qualified)} {problem} {quote_ident(column)}",
                    (f"Did you mean {quote_ident(suggestion)}? " if suggestion else "")
                    + "Time filters need a timestamp, timestamptz or date column; this table has: "
                    + (", ".join(quote_ident(c) for c in time_columns) or "none"),
                    title="Invalid time filter",
                )


# -- time windows ---------------------------------------------------------------------------


def cutoff_literal(cutoff: datetime, column_type: str) -> str:
    """The cut as a SQL literal of the column's own type.

    A publication filter must be immutable: comparing a ``timestamp`` column with a
    ``timestamptz`` value is not, so each type gets a plain literal of its own kind.
    """
    column_type = base_type(column_type)
    if column_type == "date":
        return sql.quote(cutoff.date().isoformat())
    if column_type == "timestamp without time zone":
        return sql.quote(cutoff.replace(tzinfo=None).isoformat(sep=" "))
    return sql.quote(cutoff.astimezone(UTC).isoformat(sep=" "))


def time_predicate(column: str, literal: str) -> str:
    return f"{sql.Identifier(column).as_string()} >= {literal}"


# -- server-side checks -------------------------------------------------------------------------


def _filter_remedy(table: TableScope, exc: psycopg.Error) -> str:
    message = (exc.diag.message_primary or str(exc)).strip()
    if exc.sqlstate == "42703":  # undefined_column
        missing = re.search(r'column "?([^"\s]+)"? does not exist', message)
        columns = [c.name for c in table.info.columns]
        suggestion = _suggest(missing.group(1), columns) if missing else None
        return (f"Did you mean {quote_ident(suggestion)}? " if suggestion else "") + (
            "Columns of this table: " + ", ".join(quote_ident(c) for c in columns)
        )
    if exc.sqlstate == "57014":  # query_canceled by statement_timeout
        return "The server took too long to check it; simplify the predicate."
    if exc.sqlstate in ("42P17", "0A000", "42803"):  # mutable function, subquery, aggregate
        return ("A row filter compares this table's columns with constants using immutable operators and "
                "functions: no now() or random(), no subqueries, no aggregates. Use --time-filter for "
                "'the last N days' (pgtide turns it into a fixed timestamp).")
    return "Fix the predicate; it must be a valid SQL boolean expression over this table's columns."


def _given_filter(table: TableScope) -> str:
    return table.row_filter if table.row_filter is not None else str(table.time_filter)


def canonicalize_filter(conn: psycopg.Connection[Any], table: TableScope) -> TableScope:
    """The table with its predicate replaced by the server's deparsed text, and the columns it reads."""
    assert table.where is not None
    checked = canonical_predicate(conn, table.info.qualified, table.where, display=table.display,
                                  remedy=lambda exc: _filter_remedy(table, exc))
    return replace(table, where=checked.text, filter_columns=checked.columns)


def explain_filter(conn: psycopg.Connection[Any], table: TableScope) -> int | None:
    """Plan (never run) the filtered scan; return the planner's row estimate.

    ``table.where`` is the server's deparsed text: this Parse also proves it is still one
    expression under the pinned quoting settings.
    """
    assert table.where is not None
    query = sql.SQL("EXPLAIN (FORMAT JSON) SELECT * FROM {} WHERE (").format(
        sql.Identifier(*table.info.qualified)).as_string(conn) + table.where + "\n)"
    with conn.transaction(force_rollback=True):
        limit_transaction(conn, read_only=True)
        pin_quoting(conn, local=True)
        try:
            row = execute_parsed(conn, query).fetchone()
        except psycopg.Error as exc:
            raise rejection_for(exc, conn, table.display, _given_filter(table),
                                lambda error: _filter_remedy(table, error)) from None
    plan = row[0] if row else None
    if isinstance(plan, str):
        plan = json.loads(plan)
    try:
        return int(plan[0]["Plan"]["Plan Rows"])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def check_publication_filter(conn: psycopg.Connection[Any], table: TableScope) -> bool:
    """Create the filtered publication in a rolled-back transaction: can a publication carry it?

    False when our role may not create publications here (validate reports privileges). The
    name starts with ``pgtide_check_``, which teardown also removes should one ever survive.
    """
    assert table.where is not None
    name = f"{CHECK_PUBLICATION_PREFIX}{random_names.token_hex(4)}"
    statement = sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WHERE (").format(
        sql.Identifier(name), sql.Identifier(*table.info.qualified)).as_string(conn) + table.where + "\n)"
    with conn.transaction(force_rollback=True):
        limit_transaction(conn, read_only=False)
        pin_quoting(conn, local=True)
        try:
            execute_parsed(conn, statement)
        except psycopg.errors.InsufficientPrivilege:
            return False
        except (psycopg.errors.QueryCanceled, psycopg.errors.ReadOnlySqlTransaction) as exc:
            raise rejection_for(exc, conn, table.display, _given_filter(table),
                                lambda error: _filter_remedy(table, error)) from None
        except psycopg.Error as exc:
            if conn.closed or (exc.sqlstate or "").startswith("08"):
                raise
            detail = (exc.diag.message_detail or "").strip()
            raise InputError(
                f"{table.display}: a publication cannot use the filter {_given_filter(table)!r}: "
                f"{(exc.diag.message_primary or str(exc)).strip()}" + (f" ({detail})" if detail else ""),
                "Publication row filters may only compare this table's columns with constants using "
                "immutable built-in operators and functions: no now(), no subqueries, no user-defined "
                "functions. Use --time-filter for 'the last N days' (pgtide turns it into a fixed timestamp).",
                title=_FILTER_TITLE,
            ) from None
    return True


#: How long proving that two filters keep a foreign key intact may take, per key.
FK_PROOF_TIMEOUT = "30s"


def check_filtered_foreign_keys(
    conn: psycopg.Connection[Any], catalog: DatabaseCatalog, tables: list[TableScope]
) -> list[TableScope]:
    """Both ends of a foreign key filtered: every kept child row must keep its parent row.

    Otherwise the constraint fails on the target when it is built — after the whole copy.
    Asked of the server (read only, bounded in time); when the proof times out the table
    gets a note instead, since the filters may well be fine.
    """
    by_name = {t.info.qualified: t for t in tables}
    notes: dict[tuple[str, str], list[str]] = {}
    for fk in catalog.foreign_keys:
        child, parent = by_name.get(fk.table), by_name.get(fk.referenced_table)
        if child is None or parent is None or child is parent or not child.copies_rows:
            continue
        if child.where is None or parent.where is None:
            continue  # the unfiltered cases are decided by check_fk_safety without reading rows
        join = sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(p_col), sql.Identifier(c_col))
            for c_col, p_col in zip(fk.columns, fk.referenced_columns, strict=True)
        )
        not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns)
        query = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {child} c WHERE ({child_where}) AND {not_null} AND NOT EXISTS "
            "(SELECT 1 FROM {parent} p WHERE {join} AND ({parent_where})))"
        ).format(child=sql.Identifier(*child.info.qualified), child_where=deparsed(child.where),
                 not_null=not_null, parent=sql.Identifier(*parent.info.qualified),
                 parent_where=deparsed(parent.where), join=join)
        with conn.transaction(force_rollback=True):
            limit_transaction(conn, read_only=True, timeout=FK_PROOF_TIMEOUT)
            pin_quoting(conn, local=True)
            try:
                broken = execute_parsed(conn, query).fetchone()[0]  # type: ignore[index]
            except psycopg.errors.QueryCanceled:
                notes.setdefault(child.info.qualified, []).append(
                    f"could not prove within {FK_PROOF_TIMEOUT} that its filter keeps every row's "
                    f"{format_qualified_name(parent.info.qualified)} row ({fk.name}); if not, building that "
                    "foreign key on the target fails after the copy")
                continue
        if broken:
            raise InputError(
                f"{child.display} keeps rows whose {format_qualified_name(parent.info.qualified)} row the other "
                f"filter leaves out: foreign key {quote_ident(fk.name)} would fail on the target after the copy",
                f"Make the filter of {format_qualified_name(child.info.qualified)} keep only rows whose "
                f"{', '.join(fk.columns)} the filter of {format_qualified_name(parent.info.qualified)} keeps (e.g. "
                "filter both on the same key range), or make it schema-only.",
                title="Foreign keys cross the selection",
            )
    return [replace(t, notes=(*t.notes, *notes[t.info.qualified])) if t.info.qualified in notes else t
            for t in tables]


def _push_filters_to_partitions(tables: list[TableScope]) -> list[TableScope]:
    """A filter on a partitioned table applies to every partition under it.

    Rows live in the leaves, and the copy and the publication work on leaves; a publication
    filter on the parent itself is refused by PostgreSQL. A leaf's own rule wins.
    """
    by_name = {t.info.qualified: t for t in tables}

    def inherited(table: TableScope) -> TableScope | None:
        parent = by_name.get(table.info.partition_parent) if table.info.partition_parent else None
        while parent is not None:
            if parent.where is not None:
                return parent
            parent = by_name.get(parent.info.partition_parent) if parent.info.partition_parent else None
        return None

    out = []
    for table in tables:
        source = inherited(table) if table.where is None and table.copies_rows else None
        if source is not None:
            table = replace(table, row_filter=source.row_filter, time_filter=source.time_filter,
                            time_cutoff=source.time_cutoff, where=source.where,
                            notes=(*table.notes, f"filter inherited from {format_qualified_name(source.info.qualified)}"))
        out.append(table)
    return out


def check_table_filter(conn: psycopg.Connection[Any], table: TableScope, *, replicate: bool) -> TableScope:
    """Every server-side check of one filtered table; the table with its estimate and filter columns.

    Shared by build_scope and the TUI's filter editor, so both judge a filter the same way.
    """
    checked = canonicalize_filter(conn, table)
    checked = replace(checked, estimated_rows=explain_filter(conn, checked))
    if replicate and check_publication_filter(conn, checked):
        check_replica_identity(checked)
    return checked


# -- structural checks ------------------------------------------------------------------------


def check_replica_identity(table: TableScope) -> None:
    """A row filter may only read replica-identity columns once UPDATE/DELETE are published.

    Otherwise PostgreSQL refuses UPDATE and DELETE on the *source* table from the moment the
    publication exists: the user's application would start failing.
    """
    if not table.filter_columns or table.info.replica_identity == "f":
        return
    outside = [c for c in table.filter_columns if c not in table.info.identity_columns]
    if not outside:
        return
    ident = sql.Identifier(*table.info.qualified).as_string()
    raise InputError(
        f"{table.display}: the filter reads {', '.join(quote_ident(c) for c in outside)}, which "
        f"{'is' if len(outside) == 1 else 'are'} not part of the table's replica identity "
        f"({', '.join(quote_ident(c) for c in table.info.identity_columns) or 'none'}); once published, "
        "UPDATE and DELETE on this table would fail on the source",
        f"Filter on replica-identity columns only, or run on the source: ALTER TABLE {ident} REPLICA IDENTITY FULL "
        "(UPDATE/DELETE then log whole old rows: more WAL).",
        title=_FILTER_TITLE,
    )


def _fk_component(catalog: DatabaseCatalog, start: tuple[str, str]) -> set[tuple[str, str]]:
    """Every table linked to ``start`` through foreign keys, in either direction, transitively."""
    seen = {start}
    todo = [start]
    while todo:
        current = todo.pop()
        for neighbour in catalog.fk_neighbours(*current):
            if neighbour not in seen:
                seen.add(neighbour)
                todo.append(neighbour)
    return seen


def check_fk_safety(db: DatabaseScope) -> None:
    """Filtered and schema-only tables take their FK neighbours with them, or nothing moves.

    Emptying a filtered table on the target (TRUNCATE ... CASCADE when a copy restarts, or a
    replicated TRUNCATE) reaches every table linked by foreign keys; a linked table left out
    of the migration would be emptied or make the TRUNCATE fail.
    """
    in_scope = {t.info.qualified for t in db.tables}
    excluded = {(e.schema, e.name): e.reason for e in db.excluded}
    for fk in db.catalog.foreign_keys:
        if fk.table in in_scope and fk.referenced_table in excluded:
            raise InputError(
                f"{format_qualified_name(fk.table)} is migrated but references {format_qualified_name(fk.referenced_table)}, "
                f"which is excluded ({excluded[fk.referenced_table]}): foreign key {quote_ident(fk.name)} could not "
                "be created on the target",
                f"Include {format_qualified_name(fk.referenced_table)} (schema-only is enough for the definition, but "
                "then its rows are missing), or exclude the referencing table too.",
                title="Foreign keys cross the selection",
            )
    by_name = {t.info.qualified: t for t in db.tables}
    for fk in db.catalog.foreign_keys:
        child, parent = by_name.get(fk.table), by_name.get(fk.referenced_table)
        if child is None or parent is None or child is parent:
            continue
        if child.copies_rows and child.where is None and (parent.where is not None or not parent.copies_rows):
            raise InputError(
                f"{child.display} is copied in full, but the table it references, {parent.display}, is "
                f"{'filtered' if parent.copies_rows else 'schema-only'}: rows pointing at parent rows that are not "
                f"copied would break foreign key {quote_ident(fk.name)} on the target",
                f"Filter {format_qualified_name(child.info.qualified)} the same way (e.g. --table-filter "
                f"'{format_qualified_name(child.info.qualified)}:{', '.join(fk.columns)} IN (...)'), make it schema-only, "
                "or drop the filter on the referenced table.",
                title="Foreign keys cross the selection",
            )
    for table in db.tables:
        if table.where is None and table.mode != "schema_only":
            continue
        missing = sorted(q for q in _fk_component(db.catalog, table.info.qualified) if q not in in_scope and q in excluded)
        if missing:
            names = ", ".join(format_qualified_name(q) for q in missing)
            raise InputError(
                f"{table.display} is {'filtered' if table.where else 'schema-only'}, but tables linked to it by "
                f"foreign keys are not migrated: {names}",
                "Include those tables too (a TRUNCATE ... CASCADE of the filtered table on the target reaches "
                "them, and their foreign keys need the referenced rows), or drop the filter.",
                title="Foreign keys cross the selection",
            )


def check_filter_support(server_version_num: int, selection: Selection, *, replicate: bool) -> None:
    """Publications filter rows only from PostgreSQL 15 on."""
    if not replicate or server_version_num >= 150000 or not (selection.row_filters or selection.time_filters):
        return
    raise InputError(
        f"row and time filters need PostgreSQL 15 or newer on the source for replication "
        f"(it runs {server_version_num // 10000}): older publications cannot filter rows",
        "Upgrade the source, or drop the filters (copy everything, delete unwanted rows on the target "
        "after cutover).",
        title="Filters need PostgreSQL 15",
    )


# -- the whole thing --------------------------------------------------------------------------


def with_database_from_url(source: Endpoint, selection: Selection) -> Selection:
    """The one rule for which databases a source URL means, for every command.

    A source that names a database (in the URL, a service file or PGDATABASE) means that
    database; one without a database (or with the maintenance database "postgres") means
    the whole server, as in the seed tools. Explicit --include/--exclude-databases win.
    """
    named = source.params.get("dbname") or source.defaults.get("dbname")
    if named and named != "postgres" and not selection.include_databases and not selection.exclude_databases:
        return selection.merge(Selection(include_databases=(DatabaseRule(named, "the database in the source URL"),)))
    return selection


def build_scope(
    source: Endpoint,
    selection: Selection,
    *,
    replicate: bool = True,
    now: datetime | None = None,
) -> Scope:
    """Resolve ``selection`` against the source and check every rule with the server.

    ``replicate``: the filters will also be used by a publication (sync); then PG15+ is
    required for filters, and the publication-specific checks run.
    ``now``: the moment time windows count back from (default: the source server's clock).
    """
    selection = with_database_from_url(source, selection)
    server = list_databases(source)
    notes = _check_databases(selection, server)
    selected = [db.name for db in server.databases if selection.includes_database(db.name)]
    if not selected:
        raise InputError(
            "the selection leaves no database to migrate",
            "Check --include-databases / --exclude-databases; databases on the source: "
            + (", ".join(quote_ident(db.name) for db in server.databases) or "none"),
            title="Nothing to migrate",
        )
    catalogs = {name: discover_database(source.with_dbname(name)) for name in selected}
    index = NameIndex(
        databases=frozenset(db.name for db in server.databases) | {s.name for s in server.skipped},
        schemas={name: frozenset(catalog.schemas) for name, catalog in catalogs.items()},
    )
    resolved = selection.resolve(index)
    _check_rule_targets(resolved, catalogs)
    notes.extend(resolved.notes())

    check_filter_support(server.server_version_num, resolved, replicate=replicate)

    with connect(source.with_dbname(selected[0])) as conn:
        # Binary: a text timestamp would depend on the server's DateStyle.
        clock = now or conn.execute("SELECT now()", binary=True).fetchone()[0]  # type: ignore[index]

    databases = []
    for name in selected:
        db_scope = _database_scope(source.with_dbname(name), name, catalogs[name], resolved, clock, replicate)
        check_fk_safety(db_scope)
        databases.append(db_scope)
        notes.extend(note for table in db_scope.tables for note in table.notes)
    return Scope(server, resolved, tuple(databases), clock, tuple(dict.fromkeys(notes)))


def _database_scope(
    endpoint: Endpoint,
    name: str,
    catalog: DatabaseCatalog,
    selection: Selection,
    clock: datetime,
    replicate: bool,
) -> DatabaseScope:
    tables: list[TableScope] = []
    excluded: list[ExcludedTable] = []
    for info in catalog.tables:
        treatment = selection.treatment(name, info.schema, info.name, included_by_default=not info.extension_member)
        if treatment.mode == "excluded":
            reason = "; ".join(treatment.rules) or "excluded"
            excluded.append(ExcludedTable(info.schema, info.name, reason))
            continue
        where = treatment.row_filter
        literal = None
        if treatment.time_filter is not None:
            column = info.column(treatment.time_filter.column)
            assert column is not None  # checked by _check_rule_targets
            literal = cutoff_literal(treatment.time_filter.window.cutoff(clock), column.type)
            where = time_predicate(column.name, literal)
        tables.append(
            TableScope(
                database=name,
                info=info,
                mode="schema_only" if treatment.mode == "schema_only" else "full",
                row_filter=treatment.row_filter,
                time_filter=treatment.time_filter,
                time_cutoff=literal,
                where=where,
                rules=treatment.rules,
                notes=treatment.notes,
            )
        )
    tables = _push_filters_to_partitions(tables)
    filtered = [t for t in tables if t.where is not None]
    if filtered:
        with connect(endpoint) as conn:
            checked = []
            for table in tables:
                if table.where is None:
                    checked.append(table)
                    continue
                if table.info.is_partitioned:
                    # No rows of its own, so its leaves get the other checks; the text is the
                    # server's all the same, wherever a parent's predicate shows up later.
                    checked.append(canonicalize_filter(conn, table))
                    continue
                checked.append(check_table_filter(conn, table, replicate=replicate))
            tables = check_filtered_foreign_keys(conn, catalog, checked)
    return DatabaseScope(name, catalog, tuple(tables), tuple(excluded))


