"""Every call the app makes into core, in one place: the :class:`Services` protocol.

Screens and the App never call core modules directly: they call a :class:`Services`. Two
implementations exist: :class:`CoreServices` (the real core, used by the Pilot tests against
throwaway clusters) and the fixed answers of ``tests/tui/tui_fakes.py`` (snapshots). The fakes
implement the protocol on their own instead of inheriting from ``CoreServices``: a fake that
forgets a use case must fail loudly, not quietly reach a real server through the parent class.

Every method blocks (servers, the keyring, the disk): call them from thread workers only.
Core modules are imported inside the methods, so starting the app does not import psycopg.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..core.catalog.discovery import DatabaseCatalog, ServerCatalog, TableInfo
    from ..core.catalog.estimate import Estimate
    from ..core.catalog.filtercheck import FilterCheck
    from ..core.catalog.scope import Scope
    from ..core.catalog.server import ServerInfo
    from ..core.engine.cutover import CutoverResult, Preflight
    from ..core.engine.fixes import Fix
    from ..core.engine.migrate import DatabaseResult
    from ..core.engine.validate import Report
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.plan import ForeignPlan
    from ..core.foreign.session import ForeignSession, ForeignStatus
    from ..core.foreign.source import CaptureCheck, SourceTable
    from ..core.foreign.verify import ForeignVerifyReport, TableVerdict
    from ..core.infra.endpoint import Endpoint
    from ..core.infra.events import CancelToken, Emit
    from ..core.model.plan import Plan
    from ..core.model.profiles import Profile, ProfileSummary
    from ..core.model.selection import Selection, TimeFilter
    from ..core.monitor.poll import MigrationStatus
    from ..core.session import MigrationSession
    from ..core.verify.compare import VerifyEvent, VerifyReport


class StatusSource(Protocol):
    """What the dashboard polls: ``core.monitor.Monitor`` or a stand-in."""

    def poll(self) -> MigrationStatus: ...

    def close(self) -> None: ...


class VerifyRun(Protocol):
    """A verification that can be cancelled from another thread."""

    def run(self) -> VerifyReport: ...

    def cancel(self) -> None: ...


class CutoverRun(Protocol):
    """A cutover: its preflight (reads only), then the run; cancellable from another thread."""

    def preflight(self) -> Preflight: ...

    def run(self, preflight: Preflight) -> CutoverResult: ...

    def cancel(self) -> None: ...


class Services(Protocol):
    """The use cases the UI needs from core. Implemented by :class:`CoreServices` and the test fakes."""

    # -- endpoints and servers ----------------------------------------------------------------

    def parse_endpoint(self, text: str, **overrides: str) -> Endpoint: ...

    def probe(self, endpoint: Endpoint) -> ServerInfo: ...

    def list_databases(self, endpoint: Endpoint) -> ServerCatalog: ...

    def discover_database(self, endpoint: Endpoint, database: str) -> DatabaseCatalog: ...

    def check_filter(
        self, endpoint: Endpoint, database: str, table: TableInfo, *, predicate: str | None = None,
        time_filter: TimeFilter | None = None,
    ) -> FilterCheck: ...

    # -- secrets ----------------------------------------------------------------------------------

    def keyring_status(self) -> tuple[bool, str]: ...

    def remember_password(self, endpoint: Endpoint, password: str) -> None: ...

    def stored_password(self, endpoint: Endpoint) -> str | None: ...

    def pgpass_remedy(self) -> str: ...

    # -- profiles ---------------------------------------------------------------------------------

    def list_profiles(self) -> list[ProfileSummary]: ...

    def load_profile(self, name: str) -> Profile: ...

    def save_profile(self, name: str, plan: Plan, base: Profile | None = None) -> Profile: ...

    def duplicate_profile(self, name: str, new_name: str) -> Profile: ...

    def delete_profile(self, name: str) -> None: ...

    # -- review -----------------------------------------------------------------------------------

    def build_plan(self, source: Endpoint, target: Endpoint, selection: Selection,
                   options: Mapping[str, object] | None = None) -> Plan: ...

    def validate(self, plan: Plan, emit: Emit) -> Report: ...

    def estimate(self, scope: Scope) -> Estimate: ...

    # -- running ----------------------------------------------------------------------------------

    def cancel_token(self) -> CancelToken: ...

    def init(self, plan: Plan, scope: Scope | None, emit: Emit, cancel: CancelToken) -> list[DatabaseResult]: ...

    def teardown(self, plan: Plan, databases: Sequence[str] | None, emit: Emit) -> list[str]: ...

    def detach(self) -> None:
        """Stop following running migrations' workers (the app quits): they keep running."""
        ...

    def list_migrations(self) -> list[dict[str, Any]]:
        """Every migration recorded on this machine (what `pgtide migrations --json` prints)."""
        ...

    def apply_fixes(self, plan: Plan, fixes: Sequence[Fix], emit: Emit) -> list[str]:
        """Run validate's fixes (each statement on its server); what ran, one line each."""
        ...

    def schema_apply(self, plan: Plan, database: str, emit: Emit) -> list[str]:
        """Apply the database's additive drift statements on the target (as `pgtide schema apply`)."""
        ...

    def enable_apply(self, plan: Plan, database: str, emit: Emit) -> bool:
        """Enable the subscription again after the cause of its error was fixed."""
        ...

    def skip_failed_transaction(self, plan: Plan, database: str, lsn: int, emit: Emit) -> None:
        """Throw away the remote transaction that stopped the subscription, then enable it."""
        ...

    def migration_plan(self, migration_id: str) -> Plan:
        """A recorded migration's plan (passwords from libpq or the keyring)."""
        ...

    def migration_scope(self, plan: Plan) -> Scope:
        """The tables a running migration covers (for the dashboard's per-table view)."""
        ...

    def open_monitor(self, plan: Plan, databases: Sequence[str], *, tables: int = 0) -> StatusSource: ...

    def verifier(self, plan: Plan, on_event: Callable[[VerifyEvent], None]) -> VerifyRun: ...

    def cutover(self, plan: Plan, options: Mapping[str, Any], emit: Emit) -> CutoverRun:
        """The cutover of the plan's migration; ``options`` are CutoverOptions' fields as plain
        values (``pgbouncer_url`` for the admin console), checked by core."""
        ...

    def recorded_history(self, plan: Plan) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
        """What the migration's record remembers for a reopened dashboard: per database the lag
        samples (bytes) of the last hour its worker logged, and the last verify's summary
        (``at``: epoch seconds), or None."""
        ...

    # -- foreign sources (SQLite, MySQL/MariaDB, MongoDB) -----------------------------------------

    def looks_foreign(self, text: str) -> bool:
        """Whether ``text`` names a foreign source (a sqlite:/mysql:/mariadb:/mongodb: URL, or a
        path to an SQLite file) rather than a PostgreSQL server."""
        ...

    def parse_foreign(self, text: str) -> ForeignEndpoint: ...

    def foreign_source_tables(self, source: ForeignEndpoint) -> tuple[list[SourceTable], CaptureCheck]:
        """The source's tables (rows, sizes, keys) and whether it can stream its changes; reads only."""
        ...

    def foreign_check_filter(self, source: ForeignEndpoint, table: SourceTable, where: str) -> str:
        """Ask the source whether it accepts ``where`` as ``table``'s row filter (its own SQL, or
        a JSON query for MongoDB); the filter as it will be used, or InputError with the
        source's own message. Reads nothing of the table's rows."""
        ...

    def build_foreign_plan(self, source: ForeignEndpoint, target: Endpoint,
                           options: Mapping[str, Any]) -> ForeignPlan:
        """The migration the wizard's choices form: ``options`` are ForeignPlan's fields, plus
        ``target_database`` (the database on ``target`` the tables land in); InputError when they
        do not go together (typed layout for MongoDB, …)."""
        ...

    def foreign_validate(self, plan: ForeignPlan, emit: Emit) -> Report:
        """Validate's checks for a foreign migration (source, selection, filters, layout, keys,
        consistency, change capture, target), each also emitted as it is made; changes nothing."""
        ...

    def foreign_init(self, plan: ForeignPlan, emit: Emit, cancel: CancelToken) -> list[str]:
        """The copy (as `pgtide init`): tables, rows, then keys; records the migration. The
        tables copied. Cancelled through ``cancel``; a rerun resumes per table."""
        ...

    def foreign_plan(self, migration_id: str) -> ForeignPlan:
        """A recorded foreign migration's plan (no password: the source's comes from the keyring
        or PGTIDE_SOURCE_PASSWORD when it is needed)."""
        ...

    def foreign_status(self, migration_id: str) -> ForeignStatus:
        """What `pgtide status --migration ID` reads: state, sync mode, lag or last refresh,
        per-table copy state, the worker."""
        ...

    def foreign_lag_history(self, migration_id: str) -> list[float]:
        """The lag samples (seconds) of the last hour its worker logged, oldest first."""
        ...

    def foreign_verify(self, migration_id: str, on_table: Callable[[TableVerdict], None],
                       cancel: CancelToken) -> ForeignVerifyReport:
        """Row counts and a per-row hash on both sides, table by table (reads only)."""
        ...

    def foreign_start_sync(self, migration_id: str, *, refresh_every: str | None = None) -> str:
        """Start keeping the target in sync in the migration's worker (as `pgtide sync --detach`
        without following it); the mode it runs in ("stream" or "refresh"). With ``refresh_every``
        (30s, 5m) it re-reads the source at that interval instead. Refused with the reason when a
        worker runs or the copy is not finished; CannotStream when the source keeps no change log
        and no interval is set."""
        ...

    def foreign_stop(self, migration_id: str) -> str:
        """Ask the migration's worker to stop and wait for it; what it was doing."""
        ...

    # -- the machine ------------------------------------------------------------------------------

    def log_file(self) -> Path: ...


def service_methods() -> tuple[str, ...]:
    """The names of the protocol's use cases (what every implementation must define)."""
    return tuple(name for name, member in inspect.getmembers(Services, inspect.isfunction)
                 if not name.startswith("_"))


def check_services(services: object) -> Services:
    """``services`` itself, once it is known to define every use case.

    The protocol is only structural: without this, an incomplete stand-in would fail in the
    middle of a screen, far from the mistake. Checked once, when the app is built.
    """
    missing = [name for name in service_methods() if not callable(getattr(services, name, None))]
    if missing:
        raise TypeError(f"{type(services).__name__} does not implement Services: missing {', '.join(missing)}")
    return services  # type: ignore[return-value]


class CoreServices:
    """The real core, imported on first use."""

    # -- endpoints and servers ----------------------------------------------------------------

    def parse_endpoint(self, text: str, **overrides: str) -> Endpoint:
        from ..core.infra.endpoint import Endpoint

        # The overrides are libpq keywords from the form; none is parse()'s own "env".
        return Endpoint.parse(text, **overrides)  # type: ignore[arg-type]

    def probe(self, endpoint: Endpoint) -> ServerInfo:
        from ..core.catalog.server import probe

        return probe(endpoint)

    def list_databases(self, endpoint: Endpoint) -> ServerCatalog:
        from ..core.catalog.discovery import list_databases

        return list_databases(endpoint)

    def discover_database(self, endpoint: Endpoint, database: str) -> DatabaseCatalog:
        from ..core.catalog.discovery import discover_database

        return discover_database(endpoint.with_dbname(database))

    def check_filter(
        self, endpoint: Endpoint, database: str, table: TableInfo, *, predicate: str | None = None,
        time_filter: TimeFilter | None = None,
    ) -> FilterCheck:
        from ..core.catalog.filtercheck import check_table_filter

        return check_table_filter(endpoint, database, table, predicate=predicate, time_filter=time_filter)

    # -- secrets ----------------------------------------------------------------------------------

    def keyring_status(self) -> tuple[bool, str]:
        from ..core.infra.secrets import keyring_status

        return keyring_status()

    def remember_password(self, endpoint: Endpoint, password: str) -> None:
        from ..core.infra.secrets import set_password

        set_password(endpoint, password)

    def stored_password(self, endpoint: Endpoint) -> str | None:
        from ..core.infra.secrets import get_password

        return get_password(endpoint)

    def pgpass_remedy(self) -> str:
        from ..core.infra.secrets import PGPASS_REMEDY

        return PGPASS_REMEDY

    # -- profiles ---------------------------------------------------------------------------------

    def list_profiles(self) -> list[ProfileSummary]:
        from ..core.model.profiles import list_profiles

        return list_profiles()

    def load_profile(self, name: str) -> Profile:
        from ..core.model.profiles import load_profile

        return load_profile(name)

    def save_profile(self, name: str, plan: Plan, base: Profile | None = None) -> Profile:
        from ..core.model.profiles import save_profile

        return save_profile(name, plan, base=base)

    def duplicate_profile(self, name: str, new_name: str) -> Profile:
        from ..core.model.profiles import duplicate_profile

        return duplicate_profile(name, new_name)

    def delete_profile(self, name: str) -> None:
        from ..core.model.profiles import delete_profile

        delete_profile(name)

    # -- review -----------------------------------------------------------------------------------

    def build_plan(self, source: Endpoint, target: Endpoint, selection: Selection,
                   options: Mapping[str, object] | None = None) -> Plan:
        from ..core.model.plan import Options, Plan

        return Plan(source, target, selection, Options.from_dict(dict(options or {}), source="options"))

    def validate(self, plan: Plan, emit: Emit) -> Report:
        # Not through a session: finding the migration needs both servers, and validate's
        # job is to report, check by check, the one that cannot be reached.
        from ..core.engine.validate import validate

        return validate(plan, emit=emit)

    def estimate(self, scope: Scope) -> Estimate:
        from ..core.catalog.estimate import estimate

        return estimate(scope)

    # -- running ----------------------------------------------------------------------------------

    def cancel_token(self) -> CancelToken:
        from ..core.infra.events import CancelToken

        return CancelToken()

    def __init__(self, *, detached: bool = True, keep_watching: bool = True) -> None:
        #: Migrations run in a worker process that outlives the app (core/jobs/worker.py).
        self.detached = detached
        #: The worker keeps sampling lag once streaming (the demo's servers die with it: no).
        self.keep_watching = keep_watching
        self._detach = threading.Event()
        self._foreign_sessions: dict[str, ForeignSession] = {}
        self._foreign_lock = threading.Lock()

    def init(self, plan: Plan, scope: Scope | None, emit: Emit, cancel: CancelToken) -> list[DatabaseResult]:
        if not self.detached:
            return _session(plan).init(scope=scope, emit=emit, cancel=cancel)
        return _follow_worker(plan, emit, cancel, self._detach, watch=self.keep_watching)

    def detach(self) -> None:
        self._detach.set()

    def apply_fixes(self, plan: Plan, fixes: Sequence[Fix], emit: Emit) -> list[str]:
        from ..core.engine.fixes import apply_fixes

        return apply_fixes(plan, fixes, emit=emit)

    def schema_apply(self, plan: Plan, database: str, emit: Emit) -> list[str]:
        session = _session(plan)
        (report,) = session.drift([database])
        return session.schema_apply(report, emit=emit)

    def enable_apply(self, plan: Plan, database: str, emit: Emit) -> bool:
        return _session(plan).enable(database, emit=emit)

    def skip_failed_transaction(self, plan: Plan, database: str, lsn: int, emit: Emit) -> None:
        _session(plan).skip_failed_transaction(database, lsn, emit=emit)

    def list_migrations(self) -> list[dict[str, Any]]:
        import time

        from ..core.jobs.overview import describe
        from ..core.jobs.store import all_records

        now = time.time()
        return [describe(store, now) for store in all_records()]

    def migration_plan(self, migration_id: str) -> Plan:
        from ..core.session import MigrationSession

        return MigrationSession.from_record(migration_id).plan

    def teardown(self, plan: Plan, databases: Sequence[str] | None, emit: Emit) -> list[str]:
        return _session(plan).teardown(databases, emit=emit)

    def migration_scope(self, plan: Plan) -> Scope:
        """The tables a running migration covers (for the dashboard's per-table view)."""
        from ..core.catalog.scope import build_scope

        return build_scope(plan.source, plan.selection, replicate=False)

    def open_monitor(self, plan: Plan, databases: Sequence[str], *, tables: int = 0) -> StatusSource:
        from ..core.monitor.poll import Monitor, MonitorSettings

        # Every table not ready must be listed, or the per-table view would call it ready.
        settings = MonitorSettings(pending_table_limit=max(MonitorSettings.pending_table_limit, tables))
        return Monitor.from_plan(plan, list(databases), settings=settings)

    def verifier(self, plan: Plan, on_event: Callable[[VerifyEvent], None]) -> VerifyRun:
        return _CoreVerifyRun(plan, on_event)

    # -- the machine ------------------------------------------------------------------------------

    def cutover(self, plan: Plan, options: Mapping[str, Any], emit: Emit) -> CutoverRun:
        return _CoreCutoverRun(plan, options, emit)

    def recorded_history(self, plan: Plan) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
        import time

        from ..core.jobs.worker import EventLog

        session = _session(plan)
        since = time.time() - 3600
        lag: dict[str, list[float]] = {}
        for record in EventLog(session.migration_id).read():
            if record.get("event") == "LagSample" and float(record.get("at", 0)) >= since:
                lag.setdefault(str(record.get("database")), []).append(float(record.get("lag_bytes") or 0))
        verify = session.store.meta().get("last_verify")
        return lag, verify if isinstance(verify, dict) else None

    # -- foreign sources --------------------------------------------------------------------------

    def _foreign(self, migration_id: str) -> ForeignSession:
        # One session per migration: from_record reads the keyring for the target's password,
        # which a poll every 2 s should not repeat. The record itself is read fresh each time.
        from ..core.foreign.session import ForeignSession

        with self._foreign_lock:
            session = self._foreign_sessions.get(migration_id)
            if session is None:
                session = self._foreign_sessions[migration_id] = ForeignSession.from_record(migration_id)
            return session

    def looks_foreign(self, text: str) -> bool:
        from ..core.foreign.endpoint import looks_foreign

        return looks_foreign(text)

    def parse_foreign(self, text: str) -> ForeignEndpoint:
        from ..core.foreign.endpoint import ForeignEndpoint

        return ForeignEndpoint.parse(text)

    def foreign_source_tables(self, source: ForeignEndpoint) -> tuple[list[SourceTable], CaptureCheck]:
        from ..core.foreign.drivers import open_source

        adapter = open_source(source)
        try:
            return adapter.tables(), adapter.capture_check()
        finally:
            adapter.close()

    def foreign_check_filter(self, source: ForeignEndpoint, table: SourceTable, where: str) -> str:
        from ..core.foreign.drivers import open_source

        adapter = open_source(source)
        try:
            return adapter.check_filter(table, where)
        finally:
            adapter.close()

    def build_foreign_plan(self, source: ForeignEndpoint, target: Endpoint,
                           options: Mapping[str, Any]) -> ForeignPlan:
        from ..core.foreign.plan import ForeignPlan

        fields = dict(options)
        database = str(fields.pop("target_database", "") or target.dbname)
        return ForeignPlan(source, target.with_dbname(database), **fields)

    def foreign_validate(self, plan: ForeignPlan, emit: Emit) -> Report:
        from ..core.foreign.session import ForeignSession

        return ForeignSession(plan).validate(emit=emit)

    def foreign_init(self, plan: ForeignPlan, emit: Emit, cancel: CancelToken) -> list[str]:
        from ..core.foreign.session import ForeignSession

        return ForeignSession(plan).init(emit=emit, cancel=cancel)

    def foreign_plan(self, migration_id: str) -> ForeignPlan:
        return self._foreign(migration_id).plan

    def foreign_status(self, migration_id: str) -> ForeignStatus:
        return self._foreign(migration_id).status()

    def foreign_lag_history(self, migration_id: str) -> list[float]:
        import time

        from ..core.jobs.worker import EventLog

        since = time.time() - 3600
        return [float(record["lag_seconds"]) for record in EventLog(migration_id).read()
                if record.get("event") == "ForeignProgress" and record.get("lag_seconds") is not None
                and float(record.get("at") or 0) >= since]

    def foreign_verify(self, migration_id: str, on_table: Callable[[TableVerdict], None],
                       cancel: CancelToken) -> ForeignVerifyReport:
        return self._foreign(migration_id).verify(on_table=on_table, cancel=cancel)

    def foreign_start_sync(self, migration_id: str, *, refresh_every: str | None = None) -> str:
        from dataclasses import replace

        from ..core.foreign.plan import parse_interval

        session = self._foreign(migration_id)
        if refresh_every:
            session.plan = replace(session.plan, refresh_every=parse_interval(refresh_every))
        return _start_foreign_sync(session)

    def foreign_stop(self, migration_id: str) -> str:
        import time

        from ..core.infra.errors import EnvironmentProblem
        from ..core.jobs.worker import lock_held, send_request

        answer = send_request(migration_id, {"command": "stop"})
        deadline = time.monotonic() + 30
        while lock_held(migration_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        if lock_held(migration_id):
            raise EnvironmentProblem(f"the worker of migration {migration_id} was asked to stop but still runs "
                                     "after 30 s", f"`pgtide attach {migration_id}` shows what it is doing.",
                                     title="Worker still running")
        return str(answer.get("phase") or "running")

    def log_file(self) -> Path:
        from ..core.infra.logs import log_file

        return log_file()


def _session(plan: Plan) -> MigrationSession:
    """The migration the wizard's plan forms: the app acts through the same session as the CLI."""
    from ..core.session import MigrationSession

    return MigrationSession.open(plan, selection_given=True)


def _start_foreign_sync(session: ForeignSession) -> str:
    """``pgtide sync --migration ID --detach`` without following: the checks the worker would
    fail on are made here, so the refusal says why at once; then the worker is spawned and
    its first words awaited (the mode it runs in, or the error it stopped on)."""
    import time

    from ..core.infra.errors import PgtideError
    from ..core.jobs.worker import EventLog

    migration = session.migration_id
    log = EventLog(migration)
    offset = log.path.stat().st_size if log.path.exists() else 0
    session.start_worker()
    deadline = time.monotonic() + 30
    for record in log.follow(stop=lambda: time.monotonic() > deadline, poll=0.1, offset=offset):
        if record.get("event") == "CommandFinished":
            return str(record.get("mode") or "stream")
        if record.get("event") == "WorkerFinished":
            error = record.get("error") or {}
            raise PgtideError(str(error.get("cause", "the sync's worker ended")), str(error.get("remedy", "")),
                              title=str(error.get("title", "Sync failed")))
    return "starting"


class _CoreVerifyRun:
    def __init__(self, plan: Plan, on_event: Callable[[Any], None]) -> None:
        from ..core.verify.compare import Verifier, VerifyOptions

        self._plan = plan
        self._verifier = Verifier(VerifyOptions(max_keys=50), on_event)

    def run(self) -> VerifyReport:
        from ..core.verify.compare import verify_plan

        return verify_plan(self._plan, verifier=self._verifier)

    def cancel(self) -> None:
        self._verifier.cancel()


class _CoreCutoverRun:
    """The cutover of the plan's recorded migration, from the screen's plain option values."""

    def __init__(self, plan: Plan, options: Mapping[str, Any], emit: Emit) -> None:
        from ..core.engine.cutover import CutoverOptions
        from ..core.infra.endpoint import Endpoint
        from ..core.infra.errors import InputError
        from ..core.infra.events import CancelToken

        pgbouncer_url = str(options.get("pgbouncer_url") or "")
        databases_file = str(options.get("pgbouncer_databases_file") or "")
        if options.get("fence") == "pgbouncer" and not pgbouncer_url:
            raise InputError("the PgBouncer fence needs its admin console",
                             "Fill in the admin console URL (…/pgbouncer), or choose another fence.")
        self._cancel = CancelToken()
        self._cutover = _session(plan).cutover(CutoverOptions(
            fence=options.get("fence", "roles"), verify=options.get("verify", "changed"),
            pgbouncer=Endpoint.parse(pgbouncer_url) if pgbouncer_url else None,
            pgbouncer_databases_file=Path(databases_file) if databases_file else None,
            reverse=bool(options.get("reverse")), unfence_source=bool(options.get("unfence_source")),
            copy_role_passwords=bool(options.get("copy_role_passwords")), force=bool(options.get("force")),
        ), emit=emit, cancel=self._cancel)

    def preflight(self) -> Preflight:
        return self._cutover.preflight()

    def run(self, preflight: Preflight) -> CutoverResult:
        return self._cutover.run(preflight)

    def cancel(self) -> None:
        self._cancel.cancel()


class Detached(Exception):
    """The app stopped following a migration whose worker keeps running."""


def _follow_worker(plan: Plan, emit: Emit, cancel: CancelToken, detach: threading.Event, *,
                   watch: bool) -> list[DatabaseResult]:
    """init in the migration's worker: its events come back as they would from the engine;
    the app's Cancel becomes a stop request; quitting the app detaches."""
    import dataclasses

    from ..core.engine.migrate import DatabaseResult
    from ..core.infra import events as core_events
    from ..core.infra.errors import PgtideError
    from ..core.jobs.worker import EventLog, lock_held, send_request, spawn
    from ..core.replication import naming

    kinds = {cls.__name__: cls for cls in (core_events.Log, core_events.PhaseStarted, core_events.PhaseFinished,
                                           core_events.TableProgress, core_events.TableCopied, core_events.IndexProgress,
                                           core_events.CheckReported)}
    migration = naming.migration_id(plan.source, plan.target)
    log = EventLog(migration)
    offset = log.path.stat().st_size if log.path.exists() else 0
    job = {"command": "init", "source": plan.source.conninfo(), "target": plan.target.conninfo(),
           "selection": plan.selection.to_dict(), "options": plan.options.to_dict(), "watch": watch}
    spawn(migration, job)
    asked_to_stop = False

    def stop() -> bool:
        nonlocal asked_to_stop
        if cancel.cancelled and not asked_to_stop and lock_held(migration):
            asked_to_stop = True
            send_request(migration, {"command": "stop"})
        return detach.is_set() or not lock_held(migration)

    for record in log.follow(stop=stop, poll=0.1, offset=offset):
        kind = str(record.get("event"))
        if kind in kinds:
            cls = kinds[kind]
            names = {f.name for f in dataclasses.fields(cls)}
            emit(cls(**{k: v for k, v in record.items() if k in names}))
        elif kind == "CommandFinished":
            return [DatabaseResult(**entry) for entry in record.get("databases", [])]
        elif kind == "WorkerFinished":
            if record.get("exit_code") == 4:
                raise core_events.Cancelled()
            error = record.get("error") or {}
            raise PgtideError(str(error.get("cause", "the migration's worker failed")), str(error.get("remedy", "")),
                              title=str(error.get("title", "Migration failed")))
        if detach.is_set():
            break
    raise Detached()
