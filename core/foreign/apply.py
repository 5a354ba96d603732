"""Applying source changes to the target, in commit order, exactly once in effect.

Every change becomes an upsert (insert/update: the full row after it) or a delete by key, so
applying a change the copy already holds leaves the row as it was, and the stream can start
at the earliest table's snapshot position without a gap. Changes are applied in source
commit order; several source transactions go into one target transaction, and the position
reached is written in that same transaction (``pgtide.foreign_position``), so after a crash
the stream resumes exactly where the target's data is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from queue import Empty, Queue
from typing import Any

import psycopg
from psycopg import sql

from .layout import TargetTable
from .source import Change

BOOKKEEPING_SCHEMA = "pgtide"
POSITION_TABLE = "foreign_position"


def ensure_bookkeeping(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (migration text PRIMARY KEY, position text, "
                         "source_committed_at double precision, applied_at timestamptz NOT NULL DEFAULT now())")
                 .format(sql.Identifier(BOOKKEEPING_SCHEMA), sql.Identifier(POSITION_TABLE)))


def applied_position(conn: psycopg.Connection[Any], migration: str) -> tuple[str | None, float | None]:
    """Where the stream got to, as the target's own data knows it."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{BOOKKEEPING_SCHEMA}.{POSITION_TABLE}",)).fetchone()
    if not exists or exists[0] is None:
        return None, None
    row = conn.execute(sql.SQL("SELECT position, source_committed_at FROM {}.{} WHERE migration = %s").format(
        sql.Identifier(BOOKKEEPING_SCHEMA), sql.Identifier(POSITION_TABLE)), (migration,)).fetchone()
    return (row[0], row[1]) if row else (None, None)


def forget_position(conn: psycopg.Connection[Any], migration: str) -> None:
    """Teardown: remove this migration's row, and pgtide's schema when nothing else is in it."""
    if applied_position(conn, migration) == (None, None):
        exists = conn.execute("SELECT to_regclass(%s)", (f"{BOOKKEEPING_SCHEMA}.{POSITION_TABLE}",)).fetchone()
        if not exists or exists[0] is None:
            return
    conn.execute(sql.SQL("DELETE FROM {}.{} WHERE migration = %s").format(
        sql.Identifier(BOOKKEEPING_SCHEMA), sql.Identifier(POSITION_TABLE)), (migration,))
    left = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(BOOKKEEPING_SCHEMA), sql.Identifier(POSITION_TABLE))).fetchone()
    if left and left[0] == 0:
        conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(BOOKKEEPING_SCHEMA),
                                                        sql.Identifier(POSITION_TABLE)))
        others = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace",
                              (BOOKKEEPING_SCHEMA,)).fetchone()
        if others and others[0] == 0:
            conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))


@dataclass
class Applied:
    changes: int = 0
    transactions: int = 0
    position: str | None = None
    source_committed_at: float | None = None
    applied_at: float | None = None


_END = object()


def _with_idle_marks(changes: Iterable[Change], idle: float) -> Iterator[Change | None]:
    """``changes`` read on a thread of their own, with None whenever none came for ``idle``
    seconds, so a batch is committed when the source goes quiet rather than at the next change."""
    queue: Queue[object] = Queue(maxsize=10000)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for change in changes:
                queue.put(change)
        except BaseException as exc:  # handed to the applying thread, which raises it
            failure.append(exc)
        finally:
            queue.put(_END)

    reader = threading.Thread(target=read, name="pgtide-changes", daemon=True)
    reader.start()
    while True:
        try:
            item = queue.get(timeout=idle)
        except Empty:
            yield None
            continue
        if item is _END:
            reader.join()
            if failure:
                raise failure[0]
            return
        yield item  # type: ignore[misc]


class Applier:
    """Applies changes for a set of tables to the target over one connection."""

    def __init__(self, conn: psycopg.Connection[Any], tables: dict[str, TargetTable], migration: str) -> None:
        self.conn = conn
        self.tables = tables
        self.migration = migration
        self.totals = Applied()
        self._statements: dict[tuple[str, str], sql.Composed] = {}

    def _upsert(self, table: TargetTable) -> sql.Composed:
        cached = self._statements.get((table.name, "upsert"))
        if cached is None:
            columns = table.columns
            keys = table.key_columns
            others = [c for c in columns if c not in keys]
            action = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in others))
                if others else sql.SQL("DO NOTHING"))
            if table.layout == "jsonb":
                action = sql.SQL("DO UPDATE SET data = EXCLUDED.data, _source_type = EXCLUDED._source_type, "
                                 "_migrated_at = now()")
            cached = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
                table.ident, sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                sql.SQL(", ").join(sql.Placeholder() for _ in columns),
                sql.SQL(", ").join(sql.Identifier(k) for k in keys), action)
            self._statements[(table.name, "upsert")] = cached
        return cached

    def _delete(self, table: TargetTable) -> sql.Composed:
        cached = self._statements.get((table.name, "delete"))
        if cached is None:
            cached = sql.SQL("DELETE FROM {} WHERE {}").format(table.ident, sql.SQL(" AND ").join(
                sql.SQL("{} = %s").format(sql.Identifier(k)) for k in table.key_columns))
            self._statements[(table.name, "delete")] = cached
        return cached

    def _run(self, statement: sql.Composed | None, params: list[tuple[Any, ...]]) -> None:
        if statement is not None and params:
            with self.conn.cursor() as cursor:
                cursor.executemany(statement, params)

    def apply(self, changes: Iterable[Change], *, max_changes: int = 5000, max_seconds: float = 0.2) -> Applied:
        """Apply ``changes`` until the iterator ends, committing at source transaction
        boundaries every ``max_changes`` changes or ``max_seconds``; returns what the last
        commit covered. Runs of the same statement go to the server together (executemany),
        in order."""
        batch = Applied()
        statement: sql.Composed | None = None
        params: list[tuple[Any, ...]] = []
        opened = time.monotonic()
        pending = 0

        def commit() -> None:
            nonlocal statement, params, pending, opened
            self._run(statement, params)
            statement, params = None, []
            self._commit(batch, pending)
            pending = 0
            opened = time.monotonic()
            self.conn.execute("BEGIN")

        self.conn.execute("BEGIN")
        for change in _with_idle_marks(changes, max_seconds):
            if change is None:  # the source went quiet: make what was applied visible now
                if batch.position is not None and (pending or batch.transactions):
                    commit()
                continue
            table = self.tables.get(change.table)
            if table is not None and table.key_columns:
                steps: list[tuple[sql.Composed, tuple[Any, ...]]] = []
                if change.op == "delete":
                    steps.append((self._delete(table), table.target_key(change.row)))
                else:
                    values = table.convert(change.row, 0)
                    if change.op == "update" and change.before is not None:
                        old_key = table.target_key(change.before)
                        if old_key != table.target_key(change.row):
                            steps.append((self._delete(table), old_key))
                    steps.append((self._upsert(table), values))
                for wanted, values in steps:
                    if wanted is not statement:
                        self._run(statement, params)
                        statement, params = wanted, []
                    params.append(values)
                pending += 1
            if change.position is not None:
                batch.transactions += 1
                batch.position = change.position
                batch.source_committed_at = change.committed_at or batch.source_committed_at
                if pending >= max_changes or time.monotonic() - opened >= max_seconds:
                    commit()
        self._run(statement, params)
        if batch.position is not None and (pending or batch.transactions):
            self._commit(batch, pending)
        else:
            self.conn.execute("COMMIT")
        return self.totals

    def _commit(self, batch: Applied, changes: int) -> None:
        self.conn.execute(sql.SQL(
            "INSERT INTO {}.{} (migration, position, source_committed_at, applied_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (migration) DO UPDATE SET position = EXCLUDED.position, "
            "source_committed_at = EXCLUDED.source_committed_at, applied_at = now()").format(
            sql.Identifier(BOOKKEEPING_SCHEMA), sql.Identifier(POSITION_TABLE)),
            (self.migration, batch.position, batch.source_committed_at))
        self.conn.execute("COMMIT")
        self.totals.changes += changes
        self.totals.transactions += batch.transactions
        self.totals.position = batch.position
        self.totals.source_committed_at = batch.source_committed_at
        self.totals.applied_at = time.time()
        batch.transactions = 0

    def apply_rows(self, table: TargetTable, upserts: list[tuple[Any, ...]], deletes: list[tuple[Any, ...]],
                   *, position: str | None = None) -> None:
        """Target-form rows to upsert and target keys to delete, in one transaction (the refresh)."""
        with self.conn.transaction():
            self._run(self._delete(table), deletes)
            self._run(self._upsert(table), upserts)
            if position is not None:
                self.conn.execute(sql.SQL(
                    "INSERT INTO {}.{} (migration, position, applied_at) VALUES (%s, %s, now()) "
                    "ON CONFLICT (migration) DO UPDATE SET position = EXCLUDED.position, applied_at = now()").format(
                    sql.Identifier(BOOKKEEPING_SCHEMA), sql.Identifier(POSITION_TABLE)), (self.migration, position))
        self.totals.changes += len(upserts) + len(deletes)
        self.totals.applied_at = time.time()
