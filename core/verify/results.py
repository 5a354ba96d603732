"""What verify is asked to do and what it found: options, per-table results, the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

from ..infra.errors import InputError
from ..model.selection import (
    format_qualified_name,
    quote_ident,
)
from .merge import (
    DifferenceKind,
)

TableStatus = Literal["match", "differ", "schema_differs", "skipped", "error"]
Method = Literal["key ranges", "key hash", "row hash", "schema only", "none"]



# -- options and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyOptions:
    #: Differing keys kept per table (all are counted).
    max_keys: int = 1000
    #: Tables verified at once (each uses one connection to each side).
    jobs: int = 2
    #: Rows per bucket of the first pass (key ranges), and per leaf after bisecting.
    rows_per_bucket: int = 10_000
    rows_per_hash_bucket: int = 1_000
    leaf_rows: int = 1_000
    #: Sub-ranges per bisection step.
    fanout: int = 16
    #: Tables larger than this many pages (128 MB) are read in slices of this size.
    slice_pages: int = 16384
    #: Re-check in-flight differences against a live subscription.
    live: bool = True
    #: Longest wait for the target to apply past a source position, per table.
    recheck_timeout: float = 30.0
    #: Re-reads of differing buckets / keys before what remains is reported.
    recheck_rounds: int = 4
    #: Rows fetched per side at most per query when naming keys.
    fetch_rows: int = 200_000
    #: Differing keys kept for re-checking and reporting (beyond: counted only).
    tracked_keys: int = 100_000
    #: A key range is listed instead of bisected once its row counts differ by this fraction
    #: of its rows (or one side is empty) ...
    dense_fraction: float = 0.05
    #: ... or once more than this fraction of its sub-ranges differ.
    dense_subranges: float = 0.5
    #: Rows per side per chunk when listing key ranges.
    stream_rows: int = 50_000

    def __post_init__(self) -> None:
        if self.max_keys < 0:
            raise InputError(f"max_keys must be 0 or more, not {self.max_keys}", "Pass --max-keys N with N >= 0.")
        if not 1 <= self.jobs <= 64:
            raise InputError(f"jobs must be between 1 and 64, not {self.jobs}", "Pass --jobs N with 1 <= N <= 64.")
        if self.recheck_timeout < 0:
            raise InputError("the re-check timeout cannot be negative", "Pass --recheck-timeout SECONDS >= 0.")
        if self.fanout < 2 or self.leaf_rows < 1 or self.rows_per_bucket < 1 or self.rows_per_hash_bucket < 1:
            raise InputError("bucket sizes must be positive and the fanout at least 2", "Use the defaults.")
        if not (0 <= self.dense_fraction <= 1 and 0 <= self.dense_subranges <= 1) or self.stream_rows < 1:
            raise InputError("density thresholds must lie between 0 and 1, chunks hold a row at least",
                             "Use the defaults.")


@dataclass(frozen=True)
class RowDifference:
    kind: DifferenceKind
    #: The primary key's values as text (canonical form), in key column order.
    key: tuple[str, ...]

    def describe(self, columns: Sequence[str]) -> str:
        pairs = ", ".join(f"{quote_ident(c)}={v}" for c, v in zip(columns, self.key, strict=False))
        return f"{self.kind}: {pairs}"


@dataclass(frozen=True)
class TableResult:
    database: str
    schema: str
    name: str
    status: TableStatus
    method: Method
    key_columns: tuple[str, ...] = ()
    #: The predicate compared under (filtered tables).
    where: str | None = None
    schema_only: bool = False
    source_rows: int | None = None
    target_rows: int | None = None
    missing: int = 0
    extra: int = 0
    different: int = 0
    #: The first ``max_keys`` differing keys, sorted by kind then key.
    differences: tuple[RowDifference, ...] = ()
    #: False when rows cannot be named (no primary key): only the totals are compared.
    pinpointed: bool = True
    buckets: int = 0
    #: Buckets (tables without a key) that still differ.
    differing_buckets: int = 0
    #: Buckets and keys that differed at first and agreed after replication caught up.
    resolved_in_flight: int = 0
    #: Keys (or buckets) that changed on the source at every re-check: changes in flight,
    #: not reported as differences.
    still_changing: int = 0
    #: The target did not catch up within the wait: what is reported may still be in flight.
    unsettled: bool = False
    #: Key ranges whose rows were listed from both sides to name the differing keys, and how
    #: many of them were listed whole, without bisecting, because most of their rows differed.
    listed_ranges: int = 0
    dense_ranges: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0

    @property
    def display(self) -> str:
        return f"{quote_ident(self.database)}.{format_qualified_name((self.schema, self.name))}"

    @property
    def difference_count(self) -> int:
        return self.missing + self.extra + self.different

    @property
    def ok(self) -> bool:
        return self.status in ("match", "skipped")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _plain(self)
        return data | {"table": self.display}


@dataclass(frozen=True)
class VerifyReport:
    tables: tuple[TableResult, ...]
    seconds: float
    #: Databases whose subscription was live (differences re-checked).
    live_databases: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables)

    @property
    def differing_tables(self) -> tuple[TableResult, ...]:
        return tuple(t for t in self.tables if not t.ok)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for table in self.tables:
            counts[table.status] = counts.get(table.status, 0) + 1
        return {
            "tables": len(self.tables),
            **counts,
            "missing": sum(t.missing for t in self.tables),
            "extra": sum(t.extra for t in self.tables),
            "different": sum(t.different for t in self.tables),
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
