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

if TYPE_CHECKING:
    from ..core.foreign.plan import ForeignPlan
    from ..core.foreign.session import ForeignStatus
    from ..core.foreign.verify import ForeignVerifyReport, TableVerdict

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
