"""Plain data of a foreign-source migration's dashboard (SQLite, MySQL/MariaDB, MongoDB).

A PostgreSQL migration's dashboard is built on its plan's scope and the monitor's polls
(state.py); a foreign one has neither: one target database, the tables its record lists,
and ``ForeignSession.status()``. Nothing here touches a server or imports textual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..core.infra.errors import PgtideError
from ..core.infra.events import Event, Log, PhaseFinished, PhaseStarted, TableCopied, TableProgress

if TYPE_CHECKING:
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.plan import ForeignPlan
    from ..core.foreign.session import ForeignStatus
    from ..core.foreign.source import CaptureCheck, SourceTable
    from ..core.foreign.verify import ForeignVerifyReport, TableVerdict
    from ..core.infra.endpoint import Endpoint

#: Lag samples kept for the sparkline (at one poll per 2 s: the last 8 minutes).
LAG_SAMPLES_KEPT = 240
VerifyState = Literal["idle", "running", "done", "failed"]
#: The source kinds as people name them.
KIND_NAMES = {"sqlite": "SQLite", "mysql": "MySQL/MariaDB", "mongodb": "MongoDB"}


@dataclass
class ForeignDashboardModel:
    migration_id: str
    plan: ForeignPlan | None = None
    status: ForeignStatus | None = None
    #: When the last status was read (epoch seconds of the app's wall clock).
    polled_at: float | None = None
    lag_history: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES_KEPT))
    poll_error: PgtideError | None = None
    verify_state: VerifyState = "idle"
    verify_done: int = 0
    verify_total: int = 0
    verify_results: dict[str, TableVerdict] = field(default_factory=dict)
    verify_report: ForeignVerifyReport | None = None
    verify_finished_at: datetime | None = None
    #: A start or stop request on its way ("starting the sync", "stopping the worker"), else None.
    action: str | None = None

    def restore(self, lag: Sequence[float]) -> None:
        """Start the sparkline from the lag the worker logged (a dashboard opened after a restart)."""
        if not self.lag_history:
            self.lag_history.extend(float(sample) for sample in lag)

    def record(self, status: ForeignStatus, at: float) -> None:
        self.status = status
        self.polled_at = at
        self.poll_error = None
        if status.lag_seconds is not None:
            self.lag_history.append(float(status.lag_seconds))

    @property
    def worker(self) -> dict[str, Any]:
        return self.status.worker if self.status is not None else {}

    @property
    def worker_alive(self) -> bool:
        return self.worker.get("state") == "alive"

    @property
    def copied(self) -> bool:
        """The copy is finished: a sync can start."""
        return self.status is not None and self.status.state in ("copied", "streaming")

    @property
    def table_names(self) -> list[str]:
        return sorted(self.status.tables) if self.status is not None else []

    def start_verify(self) -> None:
        self.verify_state = "running"
        self.verify_done = 0
        self.verify_total = len(self.table_names)
        self.verify_results = {}
        self.verify_report = None

    def table_verified(self, verdict: TableVerdict) -> None:
        self.verify_results[verdict.table] = verdict
        self.verify_done = len(self.verify_results)

    def verify_finished(self, report: ForeignVerifyReport | None, at: datetime) -> None:
        if report is None:
            self.verify_state = "failed"
            return
        self.verify_state = "done"
        self.verify_report = report
        self.verify_finished_at = at
        for verdict in report.tables:
            self.verify_results[verdict.table] = verdict


# -- the wizard for a foreign source: Pick, Filters, Review ----------------------------------------

#: What a row filter is written in, per source kind (the Filters screen's label and help).
FILTER_LANGUAGES = {"sqlite": "an SQLite expression", "mysql": "a MySQL/MariaDB expression",
                    "mongodb": "a JSON query document"}
FILTER_EXAMPLES = {"sqlite": "created_at >= '2024-01-01'", "mysql": "created_at >= '2024-01-01'",
                   "mongodb": '{"status": "active"}'}
TableMode = Literal["full", "schema_only"]


@dataclass
class ForeignChoices:
    """What the user chose for a foreign source, screen by screen; plain data, no server.

    ``source`` keeps the password typed on Connect (in memory, as the PostgreSQL wizard keeps
    its endpoints'); the record the copy writes keeps none.
    """

    source: ForeignEndpoint
    target: Endpoint
    tables: list[SourceTable]
    capture: CaptureCheck | None = None
    picked: set[str] = field(default_factory=set)
    schema_only: set[str] = field(default_factory=set)
    #: table → the row filter as typed (only non-empty ones).
    filters: dict[str, str] = field(default_factory=dict)
    #: table → (filter text, the source's refusal or "" when it accepted that text).
    checked: dict[str, tuple[str, str]] = field(default_factory=dict)
    layout: str = "typed"
    target_database: str = ""
    drop_existing: bool = False

    @classmethod
    def start(cls, source: ForeignEndpoint, target: Endpoint, tables: list[SourceTable],
              capture: CaptureCheck | None) -> ForeignChoices:
        database = target.dbname if target.dbname and target.dbname != "postgres" else default_database(source)
        return cls(source, target, list(tables), capture, picked={t.name for t in tables},
                   layout="jsonb" if source.kind == "mongodb" else "typed", target_database=database)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.source.kind, self.source.kind)

    @property
    def layouts(self) -> tuple[str, ...]:
        """The layouts this source can take (MongoDB's documents have no columns to type)."""
        return ("jsonb",) if self.source.kind == "mongodb" else ("typed", "jsonb")

    def table(self, name: str) -> SourceTable | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def picked_tables(self) -> list[SourceTable]:
        return [t for t in self.tables if t.name in self.picked]

    def mode(self, name: str) -> str:
        if name in self.schema_only:
            return "schema-only"
        return "filtered" if self.filters.get(name) else "all rows"

    def set_filter(self, name: str, text: str) -> None:
        text = text.strip()
        if text:
            self.filters[name] = text
        else:
            self.filters.pop(name, None)

    def filter_problem(self, name: str) -> str | None:
        """The source's refusal of the table's current filter, or None (accepted or no filter)."""
        text = self.filters.get(name)
        if not text or name in self.schema_only:
            return None
        seen = self.checked.get(name)
        return seen[1] or None if seen is not None and seen[0] == text else None

    def unchecked_filters(self) -> dict[str, str]:
        """The picked tables' filters the source has not yet judged as they read now."""
        return {name: text for name, text in self.filters.items()
                if name in self.picked and name not in self.schema_only
                and self.checked.get(name, ("", ""))[0] != text}

    def refused_filters(self) -> dict[str, str]:
        return {name: problem for name in sorted(self.picked)
                if (problem := self.filter_problem(name)) is not None}

    def blocked_reason(self) -> str | None:
        """Why Next on Filters cannot go on (the first refusal in the source's words), else None."""
        if not self.picked:
            return "No table is picked: go back and pick at least one."
        refused = self.refused_filters()
        if refused:
            name, problem = next(iter(refused.items()))
            more = f" (and {len(refused) - 1} more filter(s) refused)" if len(refused) > 1 else ""
            return f"Not moving on: {problem if name in problem else f'{name}: {problem}'}{more}"
        if not self.target_database.strip():
            return "Name the target database the tables go to."
        return None

    def plan_options(self) -> dict[str, Any]:
        """ForeignPlan's fields other than the endpoints, from these choices."""
        names = {t.name for t in self.tables}
        include = () if self.picked >= names else tuple(sorted(self.picked))
        return {"layout": self.layout, "include": include,
                "schema_only": tuple(sorted(self.schema_only & self.picked)),
                "filters": {name: text for name, text in sorted(self.filters.items())
                            if name in self.picked and name not in self.schema_only},
                "drop_existing": self.drop_existing, "target_database": self.target_database.strip()}

    def estimate(self) -> tuple[list[tuple[str, str, int, int, bool]], int, int]:
        """Per picked table (name, mode, rows, bytes, exact), and the totals of rows and bytes.

        A schema-only table moves no rows; a filtered one is counted whole (an upper bound:
        the source is not asked to count the filter's rows before the copy)."""
        rows: list[tuple[str, str, int, int, bool]] = []
        for table in self.picked_tables:
            moved = table.name not in self.schema_only
            rows.append((table.name, self.mode(table.name), table.rows if moved else 0,
                         table.size_bytes if moved else 0, table.rows_exact))
        return rows, sum(r[2] for r in rows), sum(r[3] for r in rows)


def default_database(source: ForeignEndpoint) -> str:
    """The target database a foreign source lands in unless the user names one: its own name."""
    if source.database:
        return source.database
    if source.path:
        from pathlib import PurePath

        return PurePath(source.path).stem or "migrated"
    return "migrated"


# -- a foreign copy as the run screen draws it ------------------------------------------------------

ForeignRunState = Literal["running", "cancelling", "copied", "failed", "cancelled"]


@dataclass
class ForeignTableRow:
    name: str
    rows_total: int
    bytes_total: int
    rows_done: int = 0
    bytes_done: int = 0
    done: bool = False
    schema_only: bool = False

    @property
    def fraction(self) -> float:
        if self.done:
            return 1.0
        if self.bytes_total > 0:
            return min(1.0, self.bytes_done / self.bytes_total)
        return min(1.0, self.rows_done / self.rows_total) if self.rows_total else 0.0


@dataclass
class ForeignRunModel:
    """A running (or finished) foreign init, fed by its events on the UI thread."""

    plan: ForeignPlan
    tables: dict[str, ForeignTableRow] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)
    log: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=500))
    log_count: int = 0
    state: ForeignRunState = "running"
    error: PgtideError | None = None
    copied: list[str] = field(default_factory=list)

    @classmethod
    def for_choices(cls, plan: ForeignPlan, choices: ForeignChoices) -> ForeignRunModel:
        model = cls(plan)
        for table in choices.picked_tables:
            schema_only = table.name in choices.schema_only
            model.tables[table.name] = ForeignTableRow(table.name, 0 if schema_only else table.rows,
                                                       0 if schema_only else table.size_bytes,
                                                       schema_only=schema_only)
        return model

    @property
    def migration_id(self) -> str:
        return self.plan.migration_id

    @property
    def finished(self) -> bool:
        return self.state in ("copied", "failed", "cancelled")

    def add_log(self, level: str, text: str) -> None:
        self.log.append((level, text))
        self.log_count += 1

    def apply(self, event: Event) -> None:
        if isinstance(event, PhaseStarted):
            self.phases[event.phase] = "running"
        elif isinstance(event, PhaseFinished):
            self.phases[event.phase] = "done"
        elif isinstance(event, TableProgress):
            row = self.tables.setdefault(event.table, ForeignTableRow(event.table, 0, event.bytes_total))
            row.rows_done = max(row.rows_done, event.rows_done)
            row.bytes_done = max(row.bytes_done, event.bytes_done)
            row.bytes_total = event.bytes_total or row.bytes_total
        elif isinstance(event, TableCopied):
            row = self.tables.setdefault(event.table, ForeignTableRow(event.table, event.rows, event.bytes))
            row.done = True
            row.rows_done = event.rows
            row.bytes_done = max(row.bytes_total, event.bytes)
        elif isinstance(event, Log):
            self.add_log(event.level, event.text)

    @property
    def rows_done(self) -> int:
        return sum(row.rows_done for row in self.tables.values())

    @property
    def bytes_total(self) -> int:
        return sum(row.bytes_total for row in self.tables.values())

    @property
    def bytes_done(self) -> int:
        return sum(row.bytes_total if row.done else row.bytes_done for row in self.tables.values())
