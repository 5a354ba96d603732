"""How much will move and how long it will take, from the scope and a measured copy rate."""

from __future__ import annotations

from dataclasses import dataclass

from ..jobs.store import DEFAULT_THROUGHPUT_BYTES_PER_SECOND, measured_throughput
from .scope import Scope
from ..model.selection import format_qualified_name


@dataclass(frozen=True)
class TableEstimate:
    schema: str
    name: str
    mode: str
    bytes: int
    rows: int | None
    seconds: float

    @property
    def display(self) -> str:
        return format_qualified_name((self.schema, self.name))


@dataclass(frozen=True)
class DatabaseEstimate:
    name: str
    bytes: int
    seconds: float
    tables: tuple[TableEstimate, ...]


@dataclass(frozen=True)
class Estimate:
    databases: tuple[DatabaseEstimate, ...]
    bytes_per_second: float
    #: True when the rate was measured by an earlier pgtide copy on this machine.
    measured: bool

    @property
    def bytes(self) -> int:
        return sum(db.bytes for db in self.databases)

    @property
    def seconds(self) -> float:
        return sum(db.seconds for db in self.databases)


def estimate(scope: Scope, *, bytes_per_second: float | None = None) -> Estimate:
    rate = bytes_per_second or measured_throughput()
    databases = []
    for db in scope.databases:
        tables = tuple(
            sorted(
                (
                    TableEstimate(
                        t.schema, t.name, t.mode if t.where is None else "filtered",
                        t.estimated_bytes,
                        t.estimated_rows if t.where is not None else t.info.row_estimate,
                        t.estimated_bytes / rate,
                    )
                    for t in db.tables
                    if not t.info.is_partitioned
                ),
                key=lambda e: e.bytes,
                reverse=True,
            )
        )
        size = sum(t.bytes for t in tables)
        databases.append(DatabaseEstimate(db.name, size, size / rate, tables))
    return Estimate(tuple(databases), rate, rate != DEFAULT_THROUGHPUT_BYTES_PER_SECOND)


def human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "<1s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
