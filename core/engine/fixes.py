"""One-step fixes: the remedies validate gives that pgtide can apply itself, as statements.

Each :class:`Fix` names the check it fixes, the statements (and the server and database
each runs on) and why this fix rather than another. ``validate --fix`` / ``init --fix``
list them, ask (or ``--yes``), run them with :func:`apply_fixes`, and validate again.

- **Replica identity** — a table without a primary key, or a row filter reading columns
  outside the table's replica identity (PostgreSQL refuses UPDATE and DELETE on the source
  once such a table is published): ``REPLICA IDENTITY USING INDEX`` when a unique,
  non-partial, non-deferrable index on NOT NULL columns exists (and covers the filter's
  columns): the WAL then carries only that key; else ``REPLICA IDENTITY FULL``, whose
  UPDATE/DELETE log the whole old row (more WAL) and make the target find each row by
  comparing every column.
- **Extensions** on an existing target database: ``CREATE EXTENSION`` for those the source
  uses and the target server has available.
- **Server settings** (``wal_level``, slots, senders, workers): ``ALTER SYSTEM``. They take
  effect after a restart, which pgtide never does: the re-check says "restart needed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..catalog.scope import DatabaseScope, Scope, TableScope, build_scope
from ..infra.db import connect
from ..infra.errors import MigrationFailed, PgtideError
from ..infra.events import Emit, Log, discard
from ..model.plan import Plan
from ..model.selection import format_qualified_name
from ..monitor.drift import Server, Statement


@dataclass(frozen=True)
class Fix:
    #: The validate check this fixes (Check.name) and its database.
    check: str
    database: str | None
    statements: tuple[Statement, ...]
    why: str
    #: The statements change server settings that only a restart applies.
    restart_needed: bool = False
    #: The server setting it changes (ALTER SYSTEM fixes).
    setting: str | None = None


def _ident(*parts: str) -> str:
    return sql.Identifier(*parts).as_string()


# -- replica identity --------------------------------------------------------------------------

IDENTITY_CHECK = "tables have a primary key or replica identity"

# Indexes REPLICA IDENTITY USING INDEX accepts: unique, not partial, not deferrable, valid,
# plain columns only, every one NOT NULL.
_CANDIDATE_INDEXES_SQL = """
SELECT n.nspname, c.relname, ic.relname, array_agg(a.attname ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
  AND c.oid = ANY(%(oids)s::oid[])
GROUP BY n.nspname, c.relname, ic.relname, i.indexrelid
HAVING bool_and(a.attnotnull) AND bool_and(k.attnum > 0)
ORDER BY count(*), ic.relname
"""


def _needs_identity(table: TableScope) -> tuple[str, ...] | None:
    """The columns the table's replica identity must cover (() for "any key"), or None: it is fine."""
    info = table.info
    if not table.copies_rows or info.is_partitioned or info.unlogged:
        return None
    if not info.has_usable_identity:
        return ()
    if table.filter_columns and info.replica_identity != "f":
        outside = tuple(c for c in table.filter_columns if c not in info.identity_columns)
        if outside:
            return tuple(table.filter_columns)
    return None


def identity_fixes(plan: Plan, db: DatabaseScope) -> list[Fix]:
    """One fix per table of this database whose replica identity stands in the way."""
    wanted = {t.info.qualified: (t, cols) for t in db.tables if (cols := _needs_identity(t)) is not None}
    if not wanted:
        return []
    with connect(plan.source.with_dbname(db.name)) as conn:
        rows = conn.execute(_CANDIDATE_INDEXES_SQL, {"oids": [t.info.oid for t, _ in wanted.values()]}).fetchall()
    candidates: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = {}
    for schema, name, index, columns in rows:
        candidates.setdefault((schema, name), []).append((index, tuple(columns)))
    fixes = []
    for qualified, (_table, must_cover) in wanted.items():
        ident = _ident(*qualified)
        shown = format_qualified_name(qualified)
        usable = [(index, cols) for index, cols in candidates.get(qualified, [])
                  if set(must_cover) <= set(cols)]
        reason = (f"the row filter reads {', '.join(must_cover)}" if must_cover
                  else "it has no primary key")
        if usable:
            index, cols = usable[0]
            statement = f"ALTER TABLE {ident} REPLICA IDENTITY USING INDEX {_ident(index)}"
            why = (f"{shown}: {reason}; unique index {index} on ({', '.join(cols)}) is not partial and its columns are "
                   "NOT NULL, so UPDATE/DELETE log only that key (far less WAL than FULL)")
        else:
            statement = f"ALTER TABLE {ident} REPLICA IDENTITY FULL"
            why = (f"{shown}: {reason} and no unique, non-partial index on NOT NULL columns "
                   + ("covers it" if must_cover else "exists")
                   + "; FULL makes every UPDATE/DELETE log the whole old row (more WAL on the source) and the "
                     "target find the row by comparing all columns (an index on it on the target keeps that fast)")
        fixes.append(Fix(IDENTITY_CHECK if not must_cover else "selection", db.name,
                         (Statement("source", db.name, statement),), why))
    return fixes


# -- extensions --------------------------------------------------------------------------------

EXTENSIONS_CHECK = "extensions created on target"


def extension_fixes(plan: Plan, db: DatabaseScope) -> list[Fix]:
    """CREATE EXTENSION on an existing target database for what the source has and it lacks."""
    from .migrate import database_exists

    wanted = [name for name, _version in db.catalog.extensions if name != "plpgsql"]
    if not wanted or not database_exists(plan.target, db.name):
        return []
    with connect(plan.target.with_dbname(db.name)) as conn:
        installed = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
        available = {row[0] for row in conn.execute("SELECT name FROM pg_available_extensions")}
    missing = [name for name in wanted if name not in installed and name in available]
    return [Fix(EXTENSIONS_CHECK, db.name, (Statement("target", db.name, f"CREATE EXTENSION IF NOT EXISTS {_ident(name)}"),),
                f"the source database uses extension {name}; the target server has it available but this "
                "database does not have it") for name in missing]


# -- server settings ---------------------------------------------------------------------------

def setting_fix(check: str, server: Server, setting: str, value: str | int) -> Fix:
    statement = sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(setting), sql.Literal(str(value)))
    return Fix(check, None, (Statement(server, "postgres", statement.as_string()),),
               f"{setting} is read at server start: the {server} server needs a restart afterwards (pgtide never "
               "restarts a server)", restart_needed=True, setting=setting)


# -- finding and applying ----------------------------------------------------------------------


def scope_for_fixes(plan: Plan, scope: Scope | None) -> Scope | None:
    """The scope validate built, or — when the selection was refused because a filter reads a
    column outside the replica identity — the same selection resolved without the publication
    checks, so that fix can be offered."""
    if scope is not None:
        return scope
    try:
        return build_scope(plan.source, plan.selection, replicate=False)
    except PgtideError:
        return None


def database_fixes(plan: Plan, scope: Scope) -> list[Fix]:
    fixes: list[Fix] = []
    for db in scope.databases:
        fixes += identity_fixes(plan, db)
        fixes += extension_fixes(plan, db)
    return fixes


def apply_fixes(plan: Plan, fixes: Sequence[Fix], *, emit: Emit = discard) -> list[str]:
    """Run every fix's statements, each on its server and database, in order."""
    done: list[str] = []
    for fix in fixes:
        for statement in fix.statements:
            endpoint = plan.source if statement.server == "source" else plan.target
            try:
                with connect(endpoint.with_dbname(statement.database)) as conn:
                    _execute(conn, statement.sql)
            except psycopg.Error as exc:
                message = (exc.diag.message_primary or str(exc)).strip()
                raise MigrationFailed(
                    f"{statement.server} ({statement.database}): {statement.sql}: "
                    + plan.source.redact(plan.target.redact(message)),
                    "Run it yourself as a role that may (a superuser, or the table's owner for ALTER TABLE), then "
                    "validate again.", title="Fix failed") from None
            emit(Log("info", f"{statement.server}: {statement.sql}", statement.database))
            done.append(statement.sql)
    return done


def _execute(conn: psycopg.Connection[Any], text: str) -> None:
    # Statements built here from quoted identifiers and literals only.
    conn.execute(sql.SQL(text))  # type: ignore[arg-type]


def restart_pending(plan: Plan, settings: Sequence[str]) -> list[str]:
    """Servers with settings written (ALTER SYSTEM, or a config file) that the running server
    does not use yet: they wait for a restart (pgtide never restarts a server)."""
    out = []
    for side, endpoint in (("source", plan.source), ("target", plan.target)):
        try:
            with connect(endpoint.with_dbname("postgres")) as conn:
                # pg_file_settings reads the files now: a value no reload or restart applied yet.
                rows = conn.execute(
                    "SELECT DISTINCT ON (f.name) f.name, f.setting, s.setting FROM pg_file_settings f "
                    # error is 'setting could not be applied' for exactly these: a restart applies them.
                    "JOIN pg_settings s USING (name) WHERE f.name = ANY(%s) "
                    "ORDER BY f.name, f.seqno DESC", [list(settings)]).fetchall()
                rows = [row for row in rows if row[1] != row[2]]
        except (PgtideError, psycopg.Error):
            continue
        if rows:
            out.append(f"the {side} server needs a restart: " + ", ".join(
                f"{name} is {running}, {wanted} once restarted" for name, wanted, running in rows))
    return out


__all__ = ["Fix", "apply_fixes", "database_fixes", "restart_pending", "scope_for_fixes", "setting_fix"]
