"""Verify a foreign migration: per table, row counts and a hash of every row by key.

The source is read under one snapshot per table and converted exactly as the copy converts
it; the target's rows are read back; both are hashed in one canonical form (rows.py). A
difference names the row's id (the target key). While changes stream, a row changed
between the two reads can differ for a moment: such rows are read again after the stream
has applied past the source position taken for the check (``recheck``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..infra.db import connect
from ..infra.events import CancelToken
from .layout import TargetTable
from .plan import ForeignPlan
from .rows import Key, digest, key_of_values, source_values, target_digests, target_rows
from .source import SourceAdapter

#: Ids named per table and kind of difference.
SAMPLE = 10


@dataclass
class TableVerdict:
    table: str
    source_rows: int = 0
    target_rows: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    missing_count: int = 0
    extra_count: int = 0
    different_count: int = 0
    skipped: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.skipped is not None or (self.missing_count == self.extra_count == self.different_count == 0
                                            and self.source_rows == self.target_rows)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "ok": self.ok, "source_rows": self.source_rows, "target_rows": self.target_rows,
                "missing": self.missing_count, "extra": self.extra_count, "different": self.different_count,
                "missing_ids": self.missing, "extra_ids": self.extra, "different_ids": self.different,
                "skipped": self.skipped, "seconds": round(self.seconds, 3)}


@dataclass
class ForeignVerifyReport:
    tables: list[TableVerdict]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def summary(self) -> dict[str, Any]:
        return {"tables": len(self.tables), "differing": sum(1 for t in self.tables if not t.ok),
                "seconds": round(self.seconds, 3)}


def _show(key: Key) -> str:
    return str(key[0]) if len(key) == 1 else ", ".join(str(k) for k in key)


def verify_table(plan: ForeignPlan, adapter: SourceAdapter, table: TargetTable) -> TableVerdict:
    started = time.monotonic()
    verdict = TableVerdict(table.name)
    if plan.mode(table.name) == "schema_only":
        verdict.skipped = "schema only"
        return verdict
    where = plan.filters.get(table.name)
    with connect(plan.target, pooled=False) as conn, adapter.snapshot() as snapshot:
        if not table.key_columns:
            before = Counter(digest(table, tuple(r)) for r in target_rows(conn, table))
            now = Counter(digest(table, values) for values in source_values(snapshot, table, where))
            verdict.source_rows, verdict.target_rows = sum(now.values()), sum(before.values())
            verdict.missing_count = sum((now - before).values())
            verdict.extra_count = sum((before - now).values())
            verdict.seconds = time.monotonic() - started
            return verdict
        have = target_digests(conn, table)
        verdict.target_rows = len(have)
        for values in source_values(snapshot, table, where):
            key = key_of_values(table, values)
            verdict.source_rows += 1
            seen = have.pop(key, None)
            if seen is None:
                verdict.missing_count += 1
                if len(verdict.missing) < SAMPLE:
                    verdict.missing.append(_show(key))
            elif seen != digest(table, values):
                verdict.different_count += 1
                if len(verdict.different) < SAMPLE:
                    verdict.different.append(_show(key))
        verdict.extra_count = len(have)
        verdict.extra = [_show(k) for k in list(have)[:SAMPLE]]
    verdict.seconds = time.monotonic() - started
    return verdict


def verify_tables(plan: ForeignPlan, open_adapter: Callable[[], SourceAdapter], tables: list[TargetTable],
                  *, on_table: Callable[[TableVerdict], None] | None = None, cancel: CancelToken | None = None,
                  settle: Callable[[], None] | None = None) -> ForeignVerifyReport:
    """Verify every table; a table that differs is checked once more after ``settle()`` (which
    waits until the stream has applied what the source had when it was called)."""
    started = time.monotonic()
    adapter = open_adapter()
    verdicts: list[TableVerdict] = []
    try:
        for table in tables:
            if cancel is not None:
                cancel.check()
            verdict = verify_table(plan, adapter, table)
            if not verdict.ok and settle is not None:
                settle()
                verdict = verify_table(plan, adapter, table)
            verdicts.append(verdict)
            if on_table is not None:
                on_table(verdict)
    finally:
        adapter.close()
    return ForeignVerifyReport(verdicts, time.monotonic() - started)
