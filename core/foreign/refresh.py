"""``--refresh-every``: re-read the source and apply what changed, by key.

For sources without a change log (SQLite), or when asked. Each pass reads every table under
one snapshot, compares each row's hash with the target's (rows.py) and applies inserts,
updates and deletes in one transaction per table. A table without a key on the target is
reloaded whole when anything in it differs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..infra.events import CancelToken
from .apply import Applier
from .layout import TargetTable
from .plan import ForeignPlan
from .rows import digest, key_of_values, source_values, target_digests, target_rows
from .source import SourceAdapter


@dataclass
class RefreshResult:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    reloaded: list[str] = field(default_factory=list)
    seconds: float = 0.0
    finished_at: float = 0.0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


def refresh_once(plan: ForeignPlan, adapter: SourceAdapter, tables: list[TargetTable], applier: Applier,
                 *, cancel: CancelToken | None = None) -> RefreshResult:
    started = time.monotonic()
    result = RefreshResult()
    with adapter.snapshot() as snapshot:
        for table in tables:
            if cancel is not None:
                cancel.check()
            if plan.mode(table.name) == "schema_only":
                continue
            where = plan.filters.get(table.name)
            if not table.key_columns:
                _reload_if_changed(applier.conn, table, list(source_values(snapshot, table, where)), result)
                continue
            have = target_digests(applier.conn, table)
            upserts: list[tuple[object, ...]] = []
            for values in source_values(snapshot, table, where):
                seen = have.pop(key_of_values(table, values), None)
                if seen is None:
                    result.inserted += 1
                    upserts.append(values)
                elif seen != digest(table, values):
                    result.updated += 1
                    upserts.append(values)
            # Normalized keys are numbers or text the target parses back into the key's type.
            deletes = list(have)
            result.deleted += len(deletes)
            if upserts or deletes:
                applier.apply_rows(table, upserts, deletes)
    result.seconds = time.monotonic() - started
    result.finished_at = time.time()
    return result


def _reload_if_changed(conn: psycopg.Connection[object], table: TargetTable, fresh: list[tuple[object, ...]],
                       result: RefreshResult) -> None:
    now = Counter(digest(table, v) for v in fresh)
    before = Counter(digest(table, tuple(r)) for r in target_rows(conn, table))
    if now == before:
        return
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {}").format(table.ident))
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table.ident, columns)) as copy:
            for values in fresh:
                copy.write_row(values)
    result.reloaded.append(table.name)
