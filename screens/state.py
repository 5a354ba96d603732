"""Plain data the screens share: the migration being built, a running init, the dashboard.

Nothing here touches a server, the keyring or the disk, and nothing imports textual: the
wizard's state can be tested on its own, and the screens render it. Core types that would
pull in the database driver are named for the type checker only and imported when first needed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..core.infra.errors import PgtideError
from ..core.infra.events import (
    Event,
    IndexProgress,
    Log,
    PhaseFinished,
    PhaseStarted,
    TableCopied,
    TableProgress,
)
from ..core.model.selection import (
    DatabaseRule,
    NameIndex,
    Selection,
    TableRef,
    TableRule,
    TimeFilter,
    TimeWindow,
    format_qualified_name,
    quote_ident,
)

if TYPE_CHECKING:
    from ..core.catalog.discovery import DatabaseCatalog, ServerCatalog, TableInfo
    from ..core.catalog.filtercheck import ChosenTable
    from ..core.catalog.scope import Scope
    from ..core.catalog.server import ServerInfo
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.source import CaptureCheck, SourceTable
    from ..core.infra.endpoint import Endpoint
    from ..core.model.plan import Plan
    from ..core.model.profiles import Profile
    from ..core.monitor.poll import MigrationStatus
    from ..core.verify.compare import TableResult, VerifyReport
    from .foreign_state import ForeignChoices

Side = Literal["source", "target"]
#: (database, schema, table)
TableKey = tuple[str, str, str]

DEFAULT_TIME_WINDOW = "90 days"
#: The run's log lines also go to pgtide's log file, as the CLI's commands do.
run_log = logging.getLogger("pgtide.tui.run")
LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING}
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def table_key_text(key: TableKey) -> str:
    """``db.schema.table`` as a user would type it (also the row key of table widgets)."""
    return f"{quote_ident(key[0])}.{format_qualified_name(key[1:])}"


# -- endpoints ------------------------------------------------------------------------------


@dataclass
class EndpointFields:
    """One server as the connect form shows it; ``extra`` keeps other libpq parameters of a pasted URL."""

    host: str = ""
    port: str = ""
    dbname: str = ""
    user: str = ""
    password: str = ""
    sslmode: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    _FORM_KEYS = ("host", "port", "dbname", "user", "password", "sslmode")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> EndpointFields:
        known = {key: params.get(key, "") for key in cls._FORM_KEYS}
        extra = {key: value for key, value in params.items() if key not in cls._FORM_KEYS}
        return cls(**known, extra=extra)

    def params(self) -> dict[str, str]:
        """libpq parameters (empty fields left to libpq's defaults: PG* variables, service files)."""
        out = dict(self.extra)
        for key in self._FORM_KEYS:
            value = getattr(self, key).strip() if key != "password" else getattr(self, key)
            if value:
                out[key] = value
        return out

    @property
    def is_empty(self) -> bool:
        return not any(getattr(self, key) for key in self._FORM_KEYS) and not self.extra


# -- the wizard -----------------------------------------------------------------------------


@dataclass
class TimeFilterChoice:
    column: str
    window: str = DEFAULT_TIME_WINDOW


@dataclass
class WizardState:
    """What the user has chosen so far. The screens fill it step by step; ``selection()`` turns it into core's."""

    profile: Profile | None = None
    source_fields: EndpointFields = field(default_factory=EndpointFields)
    target_fields: EndpointFields = field(default_factory=EndpointFields)
    remember_password: dict[Side, bool] = field(default_factory=lambda: {"source": False, "target": False})
    source: Endpoint | None = None
    target: Endpoint | None = None
    server_info: dict[Side, ServerInfo] = field(default_factory=dict)
    #: The loaded profile's selection: applied to each database's tables once they are known.
    base_selection: Selection | None = None
    server: ServerCatalog | None = None
    databases: list[str] = field(default_factory=list)
    catalogs: dict[str, DatabaseCatalog] = field(default_factory=dict)
    selected: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    schema_only: set[TableKey] = field(default_factory=set)
    row_filters: dict[TableKey, str] = field(default_factory=dict)
    time_filters: dict[TableKey, TimeFilterChoice] = field(default_factory=dict)
    #: Run options (core's Options as a dict: this module must not import core.plan at start-up).
    options: dict[str, object] = field(default_factory=dict)
    #: A foreign source (SQLite, MySQL/MariaDB, MongoDB) pasted into the source's URL box: it
    #: replaces the source's PostgreSQL fields until a PostgreSQL URL is pasted again.
    foreign_source: ForeignEndpoint | None = None
    #: What testing the foreign source found: its tables and whether it can stream its changes.
    foreign_tables: list[SourceTable] | None = None
    foreign_capture: CaptureCheck | None = None
    #: The foreign source's Pick/Filters/Review choices, made when Next on Connect found both sides.
    foreign: ForeignChoices | None = None

    @property
    def profile_name(self) -> str | None:
        return self.profile.name if self.profile is not None else None

    def fields(self, side: Side) -> EndpointFields:
        return self.source_fields if side == "source" else self.target_fields

    # -- loading a profile ------------------------------------------------------------------

    @classmethod
    def from_profile(cls, profile: Profile, passwords: Mapping[Side, str | None]) -> WizardState:
        plan = profile.plan
        state = cls(profile=profile)
        state.source_fields = EndpointFields.from_params(plan.source.params)
        state.target_fields = EndpointFields.from_params(plan.target.params)
        sides: tuple[Side, ...] = ("source", "target")
        for side in sides:
            stored = passwords.get(side)
            if stored and not state.fields(side).password:
                state.fields(side).password = stored
        state.base_selection = plan.selection
        state.databases = [rule.name for rule in plan.selection.include_databases]
        state.options = plan.options.to_dict()
        return state

    def initial_databases(self, server: ServerCatalog) -> list[str]:
        """Which databases start selected: the profile's, else the one the source URL names, else none."""
        known = [db.name for db in server.databases]
        if self.base_selection is not None and (self.base_selection.include_databases
                                                or self.base_selection.exclude_databases):
            return [name for name in known if self.base_selection.includes_database(name)]
        named = self.source_fields.dbname
        if named and named in known and named != "postgres":
            return [named]
        return [name for name in self.databases if name in known]

    def adopt_catalog(self, database: str, catalog: DatabaseCatalog) -> None:
        """Remember a database's tables; the first time, select them as the profile said (else all)."""
        first_time = database not in self.catalogs
        self.catalogs[database] = catalog
        if not first_time and database in self.selected:
            return
        base = self._resolved_base(database, catalog)
        chosen: set[tuple[str, str]] = set()
        for info in catalog.tables:
            key = (database, info.schema, info.name)
            if base is None:
                if not info.extension_member:
                    chosen.add(info.qualified)
                continue
            treatment = base.treatment(database, info.schema, info.name, included_by_default=not info.extension_member)
            if treatment.mode == "excluded":
                continue
            chosen.add(info.qualified)
            if treatment.mode == "schema_only":
                self.schema_only.add(key)
            if treatment.row_filter is not None:
                self.row_filters[key] = treatment.row_filter
            if treatment.time_filter is not None:
                self.time_filters[key] = TimeFilterChoice(treatment.time_filter.column, str(treatment.time_filter.window))
        self.selected[database] = chosen

    def _resolved_base(self, database: str, catalog: DatabaseCatalog) -> Selection | None:
        base = self.base_selection
        if base is None or base.is_resolved:
            return base
        names = {db.name for db in self.server.databases} if self.server else {database}
        schemas = {name: frozenset(c.schemas) for name, c in self.catalogs.items()}
        schemas[database] = frozenset(catalog.schemas)
        return base.resolve(NameIndex(databases=frozenset(names), schemas=schemas))

    # -- what is selected ---------------------------------------------------------------------

    def table_info(self, key: TableKey) -> TableInfo | None:
        catalog = self.catalogs.get(key[0])
        return catalog.table(key[1], key[2]) if catalog else None

    def selected_keys(self) -> list[TableKey]:
        """Every selected table of every selected database, in catalog order."""
        keys: list[TableKey] = []
        for database in self.databases:
            catalog = self.catalogs.get(database)
            chosen = self.selected.get(database, set())
            if catalog is None:
                continue
            keys.extend((database, t.schema, t.name) for t in catalog.tables if t.qualified in chosen)
        return keys

    def mode_of(self, key: TableKey) -> Literal["full", "schema_only", "excluded"]:
        if key[1:] not in self.selected.get(key[0], set()):
            return "excluded"
        return "schema_only" if key in self.schema_only else "full"

    def set_mode(self, key: TableKey, mode: Literal["full", "schema_only", "excluded"]) -> None:
        chosen = self.selected.setdefault(key[0], set())
        if mode == "excluded":
            chosen.discard(key[1:])
        else:
            chosen.add(key[1:])
        if mode == "schema_only":
            self.schema_only.add(key)
        else:
            self.schema_only.discard(key)

    def chosen_tables(self, database: str) -> dict[tuple[str, str], ChosenTable]:
        """This database's choices as core's foreign-key check takes them."""
        from ..core.catalog.filtercheck import ChosenTable

        chosen: dict[tuple[str, str], ChosenTable] = {}
        for schema, name in self.selected.get(database, set()):
            key = (database, schema, name)
            if key in self.schema_only:
                chosen[(schema, name)] = ChosenTable("schema_only")
            else:
                chosen[(schema, name)] = ChosenTable("full", self.describe_filter(key) or None)
        return chosen

    def describe_filter(self, key: TableKey) -> str:
        if key in self.row_filters:
            return self.row_filters[key]
        if key in self.time_filters:
            choice = self.time_filters[key]
            return f"last {choice.window} of {quote_ident(choice.column)}"
        return ""

    def selection(self) -> Selection:
        """The user's choices as one core Selection (raises InputError if a filter is malformed)."""
        databases = [db for db in self.databases if self.selected.get(db) or db not in self.catalogs]
        selected_keys = set(self.selected_keys())
        unselected: list[TableKey] = []
        for database in databases:
            catalog = self.catalogs.get(database)
            if catalog is None:
                continue
            chosen = self.selected.get(database, set())
            unselected.extend((database, t.schema, t.name) for t in catalog.tables
                              if t.qualified not in chosen and not t.extension_member)
        rules: list[TableRule] = []
        # Include and exclude rules cannot be mixed: write whichever list is shorter.
        if unselected and len(unselected) <= len(selected_keys):
            rules.extend(TableRule("exclude", TableRef(*key)) for key in unselected)
        elif unselected:
            rules.extend(TableRule("include", TableRef(*key)) for key in sorted(selected_keys))
        for key in sorted(selected_keys):
            if key in self.schema_only:
                rules.append(TableRule("schema_only", TableRef(*key)))
                continue
            if key in self.row_filters:
                rules.append(TableRule("row_filter", TableRef(*key), predicate=self.row_filters[key]))
            elif key in self.time_filters:
                choice = self.time_filters[key]
                window = TimeWindow.parse(choice.window)
                rules.append(TableRule("time_filter", TableRef(*key), time_filter=TimeFilter(choice.column, window)))
        return Selection(tuple(DatabaseRule(db) for db in databases), (), tuple(rules))


# -- a running init ------------------------------------------------------------------------------

PHASES: tuple[str, ...] = ("validate", "globals", "schema", "data", "indexes", "sync")
#: core's phase names (per database) on the phase list shown to the user.
CORE_PHASES: Mapping[str, str] = {
    "scope": "validate",
    "globals": "globals",
    "target": "schema",
    "publication": "schema",
    "schema": "schema",
    "data": "data",
    "indexes": "indexes",
    "sync": "sync",
}
PER_DATABASE_PHASES = frozenset({"schema", "data", "indexes", "sync"})
RunState = Literal["running", "streaming", "failed", "cancelling", "cancelled"]
LOG_LINES_KEPT = 2000


@dataclass
class TableProgressRow:
    database: str
    schema: str
    name: str
    bytes_total: int
    bytes_done: int = 0
    rows_done: int = 0
    done: bool = False

    @property
    def key(self) -> TableKey:
        return (self.database, self.schema, self.name)

    @property
    def fraction(self) -> float:
        if self.done:
            return 1.0
        if self.bytes_total <= 0:
            return 0.0
        return min(1.0, self.bytes_done / self.bytes_total)


@dataclass
class RunModel:
    """A running (or finished) init, as the run screen shows it. Updated from core events on the UI thread."""

    plan: Plan
    databases: list[str]
    tables: dict[TableKey, TableProgressRow] = field(default_factory=dict)
    phase_started: dict[str, set[str]] = field(default_factory=dict)
    phase_finished: dict[str, set[str]] = field(default_factory=dict)
    failed_phase: str | None = None
    log: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    #: How many log lines were ever added (the screen appends the ones it has not shown).
    log_count: int = 0
    state: RunState = "running"
    error: PgtideError | None = None
    #: Where "now" comes from for throughput and ETA (tests pin it to get stable figures).
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started_at: float = field(default_factory=time.monotonic)
    data_started_at: float | None = None
    finished_at: float | None = None
    #: Tables whose definition only is copied: listed by the run screen, with no progress.
    schema_only: list[TableKey] = field(default_factory=list)
    #: When each phase was first started (for its elapsed time while it runs).
    phase_started_at: dict[str, float] = field(default_factory=dict)
    #: The index phase per database: the newest IndexProgress (objects built, the one building).
    index_progress: dict[str, IndexProgress] = field(default_factory=dict)

    @classmethod
    def for_scope(cls, plan: Plan, scope: Scope) -> RunModel:
        model = cls(plan, [db.name for db in scope.databases])
        for db in scope.databases:
            for table in db.tables:
                if table.info.is_partitioned:
                    continue
                if table.copies_rows:
                    row = TableProgressRow(db.name, table.schema, table.name, table.estimated_bytes)
                    model.tables[row.key] = row
                else:
                    model.schema_only.append((db.name, table.schema, table.name))
        return model

    def add_log(self, level: str, text: str) -> None:
        self.log.append((level, text))
        self.log_count += 1
        run_log.log(LOG_LEVELS.get(level, logging.INFO), "%s", text)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the run started, up to its end once it has finished."""
        end = self.finished_at if self.finished_at is not None else (now if now is not None else self.clock())
        return max(0.0, end - self.started_at)

    def phase_elapsed(self, phase: str, now: float | None = None) -> float | None:
        started = self.phase_started_at.get(phase)
        if started is None:
            return None
        return max(0.0, (now if now is not None else self.clock()) - started)

    def phase_status(self, phase: str) -> Literal["pending", "running", "done", "failed"]:
        started = self.phase_started.get(phase, set())
        finished = self.phase_finished.get(phase, set())
        if self.failed_phase == phase:
            return "failed"
        if started - finished:
            return "running"
        needed = len(self.databases) if phase in PER_DATABASE_PHASES else 1
        if finished and len(finished) >= needed:
            return "done"
        return "running" if finished else "pending"

    def phase_databases(self, phase: str) -> list[str]:
        return sorted(self.phase_started.get(phase, set()) - self.phase_finished.get(phase, set()))

    def apply(self, event: Event) -> None:
        """Fold one core event into the model."""
        if isinstance(event, PhaseStarted):
            phase = CORE_PHASES.get(event.phase, event.phase)
            self.phase_started.setdefault(phase, set()).add(event.database or "")
            self.phase_started_at.setdefault(phase, self.clock())
            if phase == "data" and self.data_started_at is None:
                self.data_started_at = self.clock()
        elif isinstance(event, PhaseFinished):
            phase = CORE_PHASES.get(event.phase, event.phase)
            # "schema" is three core phases: it is finished once the last of them is.
            if event.phase in ("target", "publication"):
                return
            self.phase_finished.setdefault(phase, set()).add(event.database or "")
        elif isinstance(event, TableProgress):
            row = self.tables.get(event.key)
            if row is None:
                row = self.tables[event.key] = TableProgressRow(event.database, event.schema, event.table,
                                                                event.bytes_total)
            row.bytes_done = max(row.bytes_done, event.bytes_done)
            row.rows_done = max(row.rows_done, event.rows_done)
            row.bytes_total = event.bytes_total or row.bytes_total
        elif isinstance(event, TableCopied):
            key = (event.database, event.schema, event.table)
            row = self.tables.get(key)
            if row is None:
                row = self.tables[key] = TableProgressRow(event.database, event.schema, event.table, event.bytes)
            row.done = True
            row.rows_done = event.rows
            row.bytes_done = max(row.bytes_total, event.bytes)
        elif isinstance(event, IndexProgress):
            self.index_progress[event.database] = event
        elif isinstance(event, Log):
            prefix = f"{event.database}: " if event.database else ""
            self.add_log(event.level, prefix + event.text)

    def mark_phase_failed(self) -> None:
        running = [phase for phase in PHASES if self.phase_status(phase) == "running"]
        self.failed_phase = running[-1] if running else None

    @property
    def bytes_total(self) -> int:
        return sum(row.bytes_total for row in self.tables.values())

    @property
    def bytes_done(self) -> int:
        return sum(row.bytes_total if row.done else row.bytes_done for row in self.tables.values())

    @property
    def rows_done(self) -> int:
        return sum(row.rows_done for row in self.tables.values())

    def throughput(self, now: float | None = None) -> float | None:
        """Bytes per second since the data phase started (None before it did)."""
        if self.data_started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (now if now is not None else self.clock())
        seconds = end - self.data_started_at
        return self.bytes_done / seconds if seconds > 0.5 else None

    def eta_seconds(self, now: float | None = None) -> float | None:
        rate = self.throughput(now)
        if not rate:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / rate)

    @property
    def finished(self) -> bool:
        return self.state in ("streaming", "failed", "cancelled")


# -- the dashboard -----------------------------------------------------------------------------

#: Lag samples kept per database for the sparkline (at about one poll a second: minutes).
LAG_SAMPLES_KEPT = 240
VerifyState = Literal["idle", "running", "done", "failed"]


@dataclass(frozen=True)
class DashboardTable:
    database: str
    schema: str
    name: str
    mode: str
    rows_estimate: int | None

    @property
    def key(self) -> TableKey:
        return (self.database, self.schema, self.name)


@dataclass
class DashboardModel:
    plan: Plan
    databases: list[str]
    tables: list[DashboardTable] = field(default_factory=list)
    latest: MigrationStatus | None = None
    lag_history: dict[str, deque[float]] = field(default_factory=dict)
    poll_error: PgtideError | None = None
    verify_state: VerifyState = "idle"
    verify_done: int = 0
    verify_total: int = 0
    verify_current: str = ""
    verify_results: dict[TableKey, TableResult] = field(default_factory=dict)
    verify_report: VerifyReport | None = None
    #: When the last verify finished (wall clock, shown as a time of day).
    verify_finished_at: datetime | None = None
    #: The last verify the migration's record holds (a summary; its time as epoch seconds).
    recorded_verify: dict[str, Any] | None = None
    torn_down: bool = False

    def restore(self, lag: Mapping[str, Sequence[float]], verify: dict[str, Any] | None) -> None:
        """Start from what the record remembers (a dashboard opened after the app restarted)."""
        for database, samples in lag.items():
            if database in self.databases:
                self.lag_history[database] = deque(samples, maxlen=LAG_SAMPLES_KEPT)
        self.recorded_verify = verify

    def carry_over(self, previous: DashboardModel) -> None:
        """Keep what an earlier dashboard of the same migration learnt: lag history and the last verify."""
        known = {table.key for table in self.tables}
        self.lag_history = {db: history for db, history in previous.lag_history.items() if db in self.databases}
        self.verify_results = {key: result for key, result in previous.verify_results.items() if key in known}
        if previous.verify_state == "done":
            self.verify_state = "done"
            self.verify_report = previous.verify_report
            self.verify_finished_at = previous.verify_finished_at

    @classmethod
    def for_scope(cls, plan: Plan, scope: Scope) -> DashboardModel:
        model = cls(plan, [db.name for db in scope.databases])
        for db in scope.databases:
            for table in db.tables:
                if table.info.is_partitioned:
                    continue
                mode = "schema-only" if not table.copies_rows else ("filtered" if table.where else "full")
                rows = table.estimated_rows if table.where is not None else table.info.row_estimate
                model.tables.append(DashboardTable(db.name, table.schema, table.name, mode, rows))
        return model

    def record(self, status: MigrationStatus) -> None:
        self.latest = status
        self.poll_error = None
        for db in status.databases:
            history = self.lag_history.setdefault(db.database, deque(maxlen=LAG_SAMPLES_KEPT))
            history.append(float(db.lag_bytes or 0))

    def table_state(self, table: DashboardTable) -> str:
        """init / data copy / sync / ready as the subscription reports it; schema-only tables are not subscribed."""
        if table.mode == "schema-only":
            return "schema only"
        if self.torn_down:
            return "torn down"
        status = self.latest.database(table.database) if self.latest else None
        if status is None:
            return "…"
        if not status.target.exists:
            return "not subscribed"
        for pending in status.target.pending_tables:
            if (pending.schema, pending.name) == (table.schema, table.name):
                return pending.state
        return "ready"


def lag_samples(model: DashboardModel, database: str) -> Sequence[float]:
    return list(model.lag_history.get(database, ()))
