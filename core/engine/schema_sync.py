"""``pgtide schema diff`` / ``schema apply``: the target's schema brought back in step with the source's.

The differences come from monitor/drift.py (one fingerprint query per side). ``apply``
runs only additive statements on the target (columns, indexes, constraints, enum labels,
defaults, NOT NULL), and for a table created on the source after the copy: its definition
(pg_dump of that one table, restored on the target), the table added to the publication,
and ``REFRESH PUBLICATION WITH (copy_data = true)`` so the subscription copies it under its
own snapshot and streams it from there — gap-free for that table. A subscription the server
disabled because of the drift (disable_on_error) is enabled again afterwards.

Tables whose rows are wrong for the new definition (a type change, a dropped column) are
never "applied": they are named for ``pgtide sync --recopy``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.errors import MigrationFailed
from ..infra.events import Emit, Log, discard
from ..infra.tools import run_tool
from ..model.plan import Plan
from ..monitor.drift import DriftReport
from ..monitor.poll import Monitor
from ..replication import naming


def schema_diff(plan: Plan, databases: Sequence[str]) -> list[DriftReport]:
    """Every database's drift, read now."""
    with Monitor.from_plan(plan, databases) as monitor:
        return [monitor.drift(database) for database in databases]


def schema_apply(plan: Plan, report: DriftReport, *, emit: Emit = discard) -> list[str]:
    """Run the report's additive statements and set up its new tables; returns what was done."""
    database = report.database
    names = naming.replication_names(plan.source, plan.target, database)
    done: list[str] = []
    new_tables = [t for t in report.tables if t.new_table]
    target_db = plan.target.with_dbname(database)
    additive = [s for t in report.tables if not t.new_table for d in t.differences for s in d.statements]
    with connect(target_db) as conn:
        for statement in dict.fromkeys(additive):  # an enum two tables use is altered once
            _run_qualified(conn, statement.sql)
            emit(Log("info", f"target: {statement.sql}", database))
            done.append(statement.sql)
    for table in new_tables:
        _create_from_source(plan, database, table.qualified)
        emit(Log("info", f"target: {table.display} created from the source's definition", database))
        done.append(f"created {table.display} on the target")
        with connect(plan.source.with_dbname(database)) as conn:
            conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                sql.Identifier(names.publication), sql.Identifier(*table.qualified)))
        emit(Log("info", f"source: {table.display} added to publication {names.publication}", database))
        done.append(f"added {table.display} to publication {names.publication}")
    if new_tables or done:
        reenabled = _enable_after_error(target_db, names.subscription)
        if reenabled:
            emit(Log("info", f"subscription {names.subscription} enabled again (the drift had stopped it)", database))
            done.append(f"enabled subscription {names.subscription}")
    if new_tables:
        refresh_publication(plan, database, names.subscription, copy_data=True)
        emit(Log("info", f"subscription {names.subscription} refreshed: the new table(s) are copied by the "
                         "subscription, then streamed", database))
        done.append(f"refreshed subscription {names.subscription} (copy_data = true)")
    if done:
        from .migrate import forget_last_verify

        forget_last_verify(plan, f"{database}: the target's schema changed", emit)
    return done


def _run_qualified(conn: psycopg.Connection[Any], text: str) -> None:
    """A statement built from the source's deparsed catalog text (every name schema-qualified:
    monitor/drift.py reads it under search_path = pg_catalog), run under the same path."""
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        conn.execute(sql.SQL(text))  # type: ignore[arg-type]  # the server's own deparsed DDL, not user text


def _pattern(schema: str, table: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


def _create_from_source(plan: Plan, database: str, table: tuple[str, str]) -> None:
    """The table's definition (with its owned sequences, indexes, constraints) from pg_dump."""
    from .migrate import _server_version, restore_section

    source_db = plan.source.with_dbname(database)
    major = _server_version(source_db) // 10000
    with tempfile.TemporaryDirectory(prefix="pgtide-schema-") as tmp:
        path = Path(tmp) / "table.dump"
        args = ["--format=custom", "--schema-only", f"--table={_pattern(*table)}", f"--file={path}",
                "--no-publications", "--no-subscriptions", "--no-tablespaces"]
        if not plan.options.copy_roles:
            args.append("--no-owner")
        run_tool("pg_dump", args, source_db, server_major=major)
        restore_section(plan, database, path, "pre-data")
        restore_section(plan, database, path, "post-data")


def _enable_after_error(target_db: Any, subscription: str) -> bool:
    """Enable the subscription when the server disabled it after an apply error."""
    with connect(target_db) as conn:
        if conn.info.server_version < 150000:
            return False  # no disable_on_error, no error counters before PostgreSQL 15
        row = conn.execute(
            "SELECT s.subenabled, coalesce(st.apply_error_count, 0) + coalesce(st.sync_error_count, 0) "
            "FROM pg_subscription s LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid "
            "WHERE s.subname = %s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [subscription]).fetchone()
        if row is None or row[0] or not row[1]:
            return False
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(subscription)))
        return True


def refresh_publication(plan: Plan, database: str, subscription: str, *, copy_data: bool) -> None:
    """REFRESH PUBLICATION: the subscription adds the publication's new tables (copying them
    under its own snapshot with copy_data) and forgets the ones it dropped."""
    with connect(plan.target.with_dbname(database)) as conn:
        try:
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})").format(
                sql.Identifier(subscription), sql.SQL("true" if copy_data else "false")))
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            raise MigrationFailed(
                f"{database}: {exc.diag.message_primary}",
                "The subscription is disabled: fix what stopped it (`pgtide status`), then `pgtide sync --enable`, "
                "and run this again.") from None
