"""How much will move and how long it will take, from the scope and a measured copy rate."""

from __future__ import annotations

from dataclasses import dataclass

from ..jobs.store import DEFAULT_THROUGHPUT_BYTES_PER_SECOND, measured_throughput
from ..model.selection import format_qualified_name
from .scope import Scope


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
