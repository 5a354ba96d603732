"""How far along each database's replication is, read cheaply enough to poll every second.

One poll is one query on the source (every slot at once) plus one query per target
database (its subscription, worker, error counts and per-table states); the connections
stay open between polls. The answer is a typed, frozen :class:`MigrationStatus` with one
:class:`DatabaseStatus` per database: the raw facts from both sides, and what they mean
(state, reason, lag, retained WAL, time to catch up).

Definitions (docs/architecture.md §5):

- lag in bytes = the source's current WAL position - the slot's ``confirmed_flush_lsn``:
  everything the target has not confirmed, including WAL not even sent yet (measuring
  from the walsender's ``sent_lsn`` under-reports exactly when it matters). The current
  position is the insert position (``pg_current_wal_insert_lsn``): with asynchronous
  commits ``pg_current_wal_lsn`` trails it by up to wal_writer_delay. Note that a slot
  may confirm past the start of a transaction still open on the source, so a small lag
  does not prove a large transaction has been applied (verify checks that);
- retained WAL = current WAL position - the slot's ``restart_lsn``: what the slot keeps on
  the source's disk, compared with ``max_slot_wal_keep_size`` and ``wal_status``;
- lag in time = the walsender's replay (else flush) lag interval;
- time to catch up = current lag / the rate the lag fell at over the recent samples.

All version differences (PostgreSQL 15 to 18) live in the two ``_*_sql`` builders below.
A :class:`Monitor` may be used from one thread at a time (it holds a lock while polling);
the TUI polls it from a worker thread and re-arms its timer after each poll.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import ConnectError, InputError
from ..model.plan import Plan
from ..model.selection import Selection
from ..replication.naming import ReplicationNames, replication_names
from .drift import DriftCache, DriftReport, compare, read_fingerprints, selection_filter
from .state import (
    TABLE_STATES,
    DatabaseStatus,
    History,
    MigrationStatus,
    MonitorSettings,
    ReplicationState,
    SlotStatus,
    SubscriptionStatus,
    TableSyncState,
    WarningLevel,
    WorkerFailure,
    format_lsn,
    interval_seconds,
    lag_eta,
    parse_lsn,
    replication_state,
    retained_level,
)

__all__ = [
    "TABLE_STATES", "ApplyProgress", "DatabaseStatus", "MigrationStatus", "Monitor", "MonitorSettings",
    "ReplicationState", "SlotStatus", "SubscriptionStatus", "TableSyncState", "WarningLevel", "format_lsn",
    "parse_lsn", "poll", "selected_databases",
]

def _source_sql(version: int) -> sql.Composed:
    if version >= 170000:
        invalidation = "s.invalidation_reason"
    elif version >= 160000:
        invalidation = "CASE WHEN s.conflicting THEN 'conflict' END"
    else:
        invalidation = "NULL::text"
    # One row even without any slot: the current position comes from the first CTE.
    return sql.SQL(
        """
        WITH cur AS (
            SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                        ELSE pg_current_wal_insert_lsn() END AS lsn,
                   (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size') AS keep_mb,
                   now() AS at
        )
        SELECT cur.lsn::text, cur.keep_mb, cur.at,
               s.slot_name, s.active, s.active_pid, s.confirmed_flush_lsn::text, s.restart_lsn::text,
               s.wal_status, s.safe_wal_size, {invalidation},
               r.state, r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
               r.write_lag, r.flush_lag, r.replay_lag, r.reply_time
        FROM cur
        LEFT JOIN pg_replication_slots s ON s.slot_name = ANY(%(slots)s)
        LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
        """
    ).format(invalidation=sql.SQL(invalidation))


def _slot_statuses(rows: Sequence[Any], wanted: Sequence[str], version: int) -> tuple[dict[str, SlotStatus], datetime]:
    """:func:`_source_sql`'s rows as one SlotStatus per wanted slot (a missing one: ``exists=False``),
    and the source's clock at the poll."""
    current = parse_lsn(rows[0][0]) or 0
    keep_mb = rows[0][1]
    keep = None if keep_mb is None or keep_mb < 0 else int(keep_mb) * 1024 * 1024
    polled_at: datetime = rows[0][2]
    found: dict[str, SlotStatus] = {}
    for row in rows:
        (_, _, _, name, active, pid, confirmed, restart, wal_status, safe, invalid,
         ws_state, sent, write, flush, replay, write_lag, flush_lag, replay_lag, reply_time) = row
        if name is None:
            continue
        found[name] = SlotStatus(
            slot_name=name, exists=True, current_lsn=current, active=bool(active), active_pid=pid,
            confirmed_flush_lsn=parse_lsn(confirmed), restart_lsn=parse_lsn(restart),
            wal_status=wal_status, safe_wal_size=None if safe is None else int(safe),
            invalidation_reason=invalid, walsender_state=ws_state,
            sent_lsn=parse_lsn(sent), write_lsn=parse_lsn(write), flush_lsn=parse_lsn(flush),
            replay_lsn=parse_lsn(replay), write_lag=interval_seconds(write_lag), flush_lag=interval_seconds(flush_lag),
            replay_lag=interval_seconds(replay_lag), reply_time=reply_time,
            max_slot_wal_keep_size=keep, server_version_num=version,
        )
    for slot in wanted:
        found.setdefault(
            slot,
            SlotStatus(slot_name=slot, exists=False, current_lsn=current, max_slot_wal_keep_size=keep,
                       server_version_num=version),
        )
    return found, polled_at


_CONFLICT_COLUMNS = (
    "insert_exists",
    "update_origin_differs",
    "update_exists",
    "update_missing",
    "delete_origin_differs",
    "delete_missing",
    "multiple_unique_conflicts",
)


def _target_sql(version: int) -> sql.Composed:
    if version >= 170000:
        apply_worker = "w.worker_type = 'apply'"
        sync_worker = "x.worker_type = 'table synchronization'"
    elif version >= 160000:
        apply_worker = "w.relid IS NULL AND w.leader_pid IS NULL"
        sync_worker = "x.relid IS NOT NULL"
    else:
        apply_worker = "w.relid IS NULL"
        sync_worker = "x.relid IS NOT NULL"
    if version >= 150000:
        stats_join = "LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid"
        errors = "st.apply_error_count, st.sync_error_count, s.subdisableonerr"
    else:
        stats_join = ""
        errors = "NULL::bigint, NULL::bigint, NULL::boolean"
    if version >= 180000:
        conflicts = "ARRAY[" + ", ".join(f"st.confl_{name}" for name in _CONFLICT_COLUMNS) + "]"
    else:
        conflicts = "NULL::bigint[]"
    return sql.SQL(
        """
        SELECT s.oid, s.subenabled, s.subslotname,
               w.pid, w.received_lsn::text, w.last_msg_send_time, w.last_msg_receipt_time,
               w.latest_end_lsn::text, w.latest_end_time,
               (SELECT count(*) FROM pg_stat_subscription x WHERE x.subid = s.oid AND x.pid IS NOT NULL
                  AND {sync_worker}),
               {errors}, {conflicts},
               ARRAY(SELECT ARRAY[r.srsubstate::text, count(*)::text] FROM pg_subscription_rel r
                     WHERE r.srsubid = s.oid GROUP BY r.srsubstate),
               ARRAY(SELECT ARRAY[n.nspname::text, c.relname::text, r.srsubstate::text, r.srsublsn::text]
                     FROM pg_subscription_rel r
                     JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE r.srsubid = s.oid AND r.srsubstate <> 'r'
                     ORDER BY n.nspname, c.relname LIMIT %(limit)s)
        FROM pg_subscription s
        LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND {apply_worker}
        {stats_join}
        WHERE s.subname = %(name)s
          AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        """
    ).format(
        sync_worker=sql.SQL(sync_worker),
        errors=sql.SQL(errors),
        conflicts=sql.SQL(conflicts),
        apply_worker=sql.SQL(apply_worker),
        stats_join=sql.SQL(stats_join),
    )


def _subscription_status(name: str, row: Sequence[Any], version: int) -> SubscriptionStatus:
    """:func:`_target_sql`'s row for an existing subscription as a SubscriptionStatus."""
    (_oid, enabled, slot, pid, received, send_time, receipt_time, latest_end, latest_end_time,
     sync_workers, apply_errors, sync_errors, disable_on_error, conflicts, state_counts, pending) = row
    counts = dict.fromkeys(TABLE_STATES.values(), 0)
    for code, count in state_counts or ():
        counts[TABLE_STATES.get(code, code)] = int(count)
    conflict_counts = (
        {key: int(value or 0) for key, value in zip(_CONFLICT_COLUMNS, conflicts, strict=False)}
        if conflicts else {}
    )
    return SubscriptionStatus(
        subscription_name=name, exists=True, enabled=bool(enabled), slot_name=slot, worker_pid=pid,
        received_lsn=parse_lsn(received), latest_end_lsn=parse_lsn(latest_end),
        last_msg_send_time=send_time, last_msg_receipt_time=receipt_time, latest_end_time=latest_end_time,
        sync_workers=int(sync_workers or 0), table_counts=MappingProxyType(counts),
        pending_tables=tuple(
            TableSyncState(schema, table, TABLE_STATES.get(code, code), parse_lsn(lsn))
            for schema, table, code, lsn in pending or ()
        ),
        apply_error_count=None if apply_errors is None else int(apply_errors),
        sync_error_count=None if sync_errors is None else int(sync_errors),
        conflict_counts=MappingProxyType(conflict_counts), server_version_num=version,
        disable_on_error=disable_on_error,
    )


# The subscription's replication origin records the source commit LSN of the last applied
# transaction; reading it needs superuser or an explicit grant, so it is optional.
_ORIGIN_SQL = """
SELECT o.remote_lsn::text FROM pg_replication_origin_status o
WHERE o.external_id = 'pg_' || (SELECT s.oid FROM pg_subscription s WHERE s.subname = %(name)s
                                 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""

_APPLIED_SQL = """
SELECT w.latest_end_lsn::text FROM pg_stat_subscription w
JOIN pg_subscription s ON s.oid = w.subid
WHERE s.subname = %(name)s AND w.relid IS NULL AND w.pid IS NOT NULL
  AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# The tail of the current server log (superuser or pg_read_server_files, logging_collector on).
_LOG_TAIL_SQL = """
SELECT pg_read_file(f, greatest(0, (pg_stat_file(f)).size - %(bytes)s), %(bytes)s)
FROM pg_current_logfile() AS f WHERE f IS NOT NULL
"""
LOG_TAIL_BYTES = 256 * 1024


_CONTEXT_TABLE = re.compile(r'replication target relation "([^"]+)"')
_CONTEXT_FINISH = re.compile(r"finished at ([0-9A-Fa-f]+/[0-9A-Fa-f]+)")
_ERROR_TABLE = re.compile(r'relation "([^"]+)"')


def extract_worker_failure(log_text: str, subscription_oid: int) -> WorkerFailure | None:
    """The last error a subscription's workers logged, from server log text.

    Apply errors carry a CONTEXT line naming the subscription's replication origin
    (``pg_<oid>``), the target relation and the remote transaction's finish LSN; the ERROR
    and DETAIL lines of the same process precede it.
    """
    lines = log_text.splitlines()
    marker = f'"pg_{subscription_oid}"'
    sync_marker = f"subscription \"{subscription_oid}\""
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if marker not in line and sync_marker not in line:
            continue
        pid = _log_pid(line)
        error = detail = None
        for back in range(index - 1, max(-1, index - 20), -1):
            candidate = lines[back]
            if pid is not None and _log_pid(candidate) not in (None, pid):
                continue
            if detail is None and "DETAIL:" in candidate:
                detail = candidate.split("DETAIL:", 1)[1].strip()
            if "ERROR:" in candidate:
                error = candidate.split("ERROR:", 1)[1].strip()
                break
        if error:
            table = _CONTEXT_TABLE.search(line) or _ERROR_TABLE.search(error)
            finish = _CONTEXT_FINISH.search(line)
            return WorkerFailure(f"{error} ({detail})" if detail else error,
                                 table.group(1) if table else None,
                                 parse_lsn(finish.group(1)) if finish else None)
    # No CONTEXT line (e.g. a sync worker that failed to connect): the last worker error.
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if "ERROR:" in line and "logical replication" in line:
            text = line.split("ERROR:", 1)[1].strip()
            table = _ERROR_TABLE.search(text)
            return WorkerFailure(text, table.group(1) if table else None)
    return None


def extract_worker_error(log_text: str, subscription_oid: int) -> str | None:
    """The text of :func:`extract_worker_failure` (None when the log has none)."""
    failure = extract_worker_failure(log_text, subscription_oid)
    return failure.error if failure else None


def _log_pid(line: str) -> str | None:
    found = re.search(r"\[(\d+)\]", line)
    return found.group(1) if found else None


# -- the poller ------------------------------------------------------------------------------


#: Drift is read at most once per this many times the last reading took.
DRIFT_COST_FACTOR = 30.0


def _database_missing(exc: ConnectError) -> bool:
    return bool(re.search(r"database .* does not exist", exc.cause))


class Monitor:
    """Polls the replication of one migration (source server -> target server), cheaply.

    Keeps one connection to the source and one per target database open between polls,
    and a short history per database for the lag trend. Call :meth:`close` when done (or
    use it as a context manager).
    """

    def __init__(
        self,
        source: Endpoint,
        target: Endpoint,
        databases: Sequence[str],
        *,
        settings: MonitorSettings | None = None,
        names: Callable[[Endpoint, Endpoint, str], ReplicationNames] = replication_names,
        clock: Callable[[], float] = time.monotonic,
        selection: Selection | None = None,
    ) -> None:
        if not databases:
            raise InputError("no database to monitor", "Select at least one database.")
        self.source = source
        self.target = target
        self.databases = tuple(databases)
        self.settings = settings or MonitorSettings()
        self.names = {db: names(source, target, db) for db in self.databases}
        self._clock = clock
        self._lock = threading.Lock()
        self._source_conn: psycopg.Connection[Any] | None = None
        self._target_conns: dict[str, psycopg.Connection[Any] | None] = {}
        self._versions: dict[str, int] = {}
        self._history: dict[str, History] = {db: History() for db in self.databases}
        #: The migration's selection: a new source table it excludes is no drift.
        self.selection = selection
        self._drift = DriftCache()
        self._drift_conns: dict[str, psycopg.Connection[Any] | None] = {}
        self._closed = False

    @classmethod
    def from_plan(cls, plan: Plan, databases: Sequence[str] | None = None, **kwargs: Any) -> Monitor:
        """Monitor the databases ``plan`` selects (or the ones given)."""
        if databases is None:
            databases = selected_databases(plan)
        kwargs.setdefault("selection", plan.selection)
        return cls(plan.source, plan.target, databases, **kwargs)

    # -- connections ------------------------------------------------------------------------

    def _open(self, endpoint: Endpoint) -> psycopg.Connection[Any]:
        # From the command's pool when there is one (the app's dashboard, status --watch):
        # the settings below are reset when the monitor hands the connection back.
        conn = connect(endpoint)
        conn.execute("SELECT pg_catalog.set_config('application_name', 'pgtide-monitor', false), "
                     "pg_catalog.set_config('statement_timeout', %s, false)",
                     [str(self.settings.statement_timeout_ms)])
        return conn

    def _source(self) -> psycopg.Connection[Any]:
        if self._source_conn is None or self._source_conn.closed:
            self._source_conn = self._open(self.source.with_dbname(self.databases[0]))
            self._versions["source"] = self._source_conn.info.server_version
        return self._source_conn

    def _target(self, database: str) -> psycopg.Connection[Any] | None:
        """The target database's connection; None when that database does not exist."""
        conn = self._target_conns.get(database)
        if conn is None or conn.closed:
            try:
                conn = self._open(self.target.with_dbname(database))
            except ConnectError as exc:
                if _database_missing(exc):
                    self._target_conns[database] = None
                    return None
                raise
            self._target_conns[database] = conn
            self._versions["target"] = conn.info.server_version
        return conn

    def _drop(self, conn: psycopg.Connection[Any] | None) -> None:
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop(self._source_conn)
            self._source_conn = None
            for conn in self._target_conns.values():
                self._drop(conn)
            self._target_conns.clear()
            for conn in self._drift_conns.values():
                self._drop(conn)
            self._drift_conns.clear()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- polling ----------------------------------------------------------------------------

    def poll(self) -> MigrationStatus:
        """Read both sides once and interpret them. Raises ConnectError if a server is gone."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Monitor.poll() after close()")
            slots, polled_at = self._with_retry(self._read_source)
            statuses = []
            for database in self.databases:
                names = self.names[database]
                target_status = self._with_retry(functools.partial(self._read_target, database))
                status = self._interpret(database, slots[names.slot], target_status, polled_at)
                statuses.append(replace(status, drift=self._drift_for(status, polled_at)))
            return MigrationStatus(tuple(statuses), polled_at)

    def drift(self, database: str) -> DriftReport:
        """Read one database's schema drift now (two queries), whatever the interval."""
        with self._lock:
            report = self._read_drift(database, None)
            self._drift.reports[database] = report
            self._drift.read_at[database] = self._clock()
            return report

    def _drift_for(self, status: DatabaseStatus, polled_at: datetime) -> DriftReport | None:
        """The database's drift: read again when the last reading is older than the interval.

        Only for a replication that exists on both sides (during the first copy the target is
        still being built, and nothing could be compared)."""
        interval = self.settings.drift_interval_seconds
        database = status.database
        if interval <= 0 or not (status.source.exists and status.target.exists):
            return None
        now = self._clock()
        last = self._drift.read_at.get(database)
        # A huge catalog makes a reading take seconds: space them out so drift never costs more
        # than a few percent of the polling (the dashboard waits for each poll).
        interval = max(interval, DRIFT_COST_FACTOR * self._drift.seconds.get(database, 0.0))
        if last is None or now - last >= interval:
            started = time.monotonic()
            self._drift.reports[database] = self._read_drift(database, polled_at)
            self._drift.seconds[database] = time.monotonic() - started
            self._drift.read_at[database] = now
        return self._drift.reports.get(database)

    def _read_drift(self, database: str, polled_at: datetime | None) -> DriftReport:
        names = self.names[database]
        try:
            source = self._drift_conns.get(database)
            if source is None or source.closed:
                source = self._drift_conns[database] = self._open(self.source.with_dbname(database))
            target = self._target(database)
            if target is None:
                return DriftReport(database, polled_at, error="the target database does not exist")
            ours = read_fingerprints(source, publication=names.publication)
            schemas = sorted({t.schema for t in ours})
            theirs = read_fingerprints(target, subscription=names.subscription, schemas=schemas)
        except (psycopg.Error, ConnectError) as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._drop(self._drift_conns.pop(database, None))
            message = exc.cause if isinstance(exc, ConnectError) else (exc.diag.message_primary or str(exc))
            return DriftReport(database, polled_at, error=self.source.redact(self.target.redact(message)))
        include = selection_filter(self.selection, database, schemas) if self.selection is not None else None
        return compare(database, ours, theirs, publication=names.publication, subscription=names.subscription,
                       include=include, checked_at=polled_at)

    def _with_retry(self, action: Callable[[], Any]) -> Any:
        """One reconnect on a broken connection (server restart, idle timeout), then give up."""
        try:
            return action()
        except psycopg.OperationalError:
            self._reset_connections()
        try:
            return action()
        except psycopg.OperationalError as exc:
            self._reset_connections()
            message = (self.source.redact(self.target.redact(str(exc))).strip().splitlines() or ["no detail"])[0]
            raise ConnectError(
                f"polling failed: {message}",
                "Check that both servers are up, reachable and not overloaded; the next poll reconnects.",
            ) from None

    def _reset_connections(self) -> None:
        self._drop(self._source_conn)
        self._source_conn = None
        for conn in self._target_conns.values():
            self._drop(conn)
        self._target_conns.clear()

    def _read_source(self) -> tuple[dict[str, SlotStatus], datetime]:
        conn = self._source()
        version = self._versions["source"]
        wanted = [self.names[db].slot for db in self.databases]
        rows = conn.execute(_source_sql(version), {"slots": wanted}).fetchall()
        return _slot_statuses(rows, wanted, version)

    def _read_target(self, database: str) -> SubscriptionStatus:
        name = self.names[database].subscription
        conn = self._target(database)
        if conn is None:
            return SubscriptionStatus(subscription_name=name, exists=False, database_exists=False)
        version = self._versions["target"]
        row = conn.execute(_target_sql(version), {"name": name, "limit": self.settings.pending_table_limit}).fetchone()
        if row is None:
            return SubscriptionStatus(subscription_name=name, exists=False, server_version_num=version)
        return _subscription_status(name, row, version)

    # -- interpretation ---------------------------------------------------------------------

    def _last_error(self, database: str, errors: int) -> WorkerFailure | None:
        """The worker's error text from the target's server log, read once per new error count.

        Needs superuser or pg_read_server_files and logging_collector on the target;
        without them the error counts must do (None).
        """
        history = self._history[database]
        if history.cached_error is not None and history.cached_error[0] == errors:
            return history.cached_error[1]
        conn = self._target(database)
        if conn is None:
            return None
        try:
            oid = conn.execute(
                "SELECT oid FROM pg_subscription WHERE subname = %s "
                "AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [self.names[database].subscription],
            ).fetchone()
            row = conn.execute(_LOG_TAIL_SQL, {"bytes": LOG_TAIL_BYTES}).fetchone()
        except psycopg.OperationalError:
            return None  # the next poll reconnects; the text is optional
        except psycopg.Error:
            row = oid = None
        failure = extract_worker_failure(row[0], int(oid[0])) if row and row[0] and oid else None
        history.cached_error = (errors, failure)
        return failure

    def _interpret(
        self, database: str, slot: SlotStatus, sub: SubscriptionStatus, polled_at: datetime
    ) -> DatabaseStatus:
        settings = self.settings
        now = self._clock()
        history = self._history[database]
        lag_bytes, retained, lag_seconds = _lags(slot, settings)
        errors = _observe(history, now, slot, sub, lag_bytes)
        level, retained_reason = retained_level(slot, retained, settings)
        state, reason = replication_state(database, slot, sub, history, now, lag_bytes, lag_seconds, errors,
                                          settings=settings, slot_name=self.names[database].slot)
        eta = _catch_up_eta(state, history, now, settings, lag_bytes)
        if sub.last_error is None and state is ReplicationState.BROKEN and sub.exists and errors:
            failure = self._last_error(database, errors)
            if failure:
                sub = replace(sub, last_error=failure.error, failed_table=failure.table, failed_lsn=failure.finish_lsn)
                reason = f"{reason}: {failure.error}" + (f" (table {failure.table})" if failure.table else "")
            if not sub.enabled:
                reason += ("; fix the cause, then `pgtide sync --enable`, or skip that transaction (its rows are "
                           "lost): `pgtide sync --skip-failed-transaction`")
        return DatabaseStatus(
            database=database, source=slot, target=sub, state=state, reason=reason, lag_bytes=lag_bytes,
            lag_seconds=lag_seconds, retained_wal_bytes=retained, retained_warning=level,
            retained_reason=retained_reason, eta_seconds=eta, polled_at=polled_at,
        )


# -- one poll's readings, interpreted (pure: the I/O is the Monitor's) ---------------------------


def _lags(slot: SlotStatus, settings: MonitorSettings) -> tuple[int | None, int | None, float | None]:
    """(lag in bytes, retained WAL in bytes, lag in seconds), as the module docstring defines them."""
    lag_bytes = None
    if slot.exists and slot.confirmed_flush_lsn is not None:
        lag_bytes = max(0, slot.current_lsn - slot.confirmed_flush_lsn)
    retained = None
    if slot.exists and slot.restart_lsn is not None:
        retained = max(0, slot.current_lsn - slot.restart_lsn)
    lag_seconds = slot.replay_lag if slot.replay_lag is not None else slot.flush_lag
    if lag_seconds is None and lag_bytes is not None and lag_bytes <= settings.streaming_lag_bytes and slot.active:
        lag_seconds = 0.0
    return lag_bytes, retained, lag_seconds


def _observe(history: History, now: float, slot: SlotStatus, sub: SubscriptionStatus, lag_bytes: int | None) -> int:
    """Fold one poll into the history (trend samples, confirmed progress, walsender presence,
    error growth); returns the subscription's error count."""
    if lag_bytes is not None:
        history.samples.append((now, lag_bytes))
    if slot.confirmed_flush_lsn != history.last_confirmed:
        history.last_confirmed = slot.confirmed_flush_lsn
        history.confirmed_moved_at = now
    if slot.exists and not slot.active:
        history.slot_inactive_since = history.slot_inactive_since or now
    else:
        history.slot_inactive_since = None
    if sub.exists and sub.enabled and sub.worker_pid is None:
        history.worker_missing_since = history.worker_missing_since or now
    else:
        history.worker_missing_since = None
    errors = (sub.apply_error_count or 0) + (sub.sync_error_count or 0)
    if history.errors_seen is not None and errors > history.errors_seen:
        history.errors_grew_at = now
    history.errors_seen = errors
    return errors


def _catch_up_eta(state: ReplicationState, history: History, now: float, settings: MonitorSettings,
                  lag_bytes: int | None) -> float | None:
    """Seconds to catch up: none to wait when streaming, no estimate when nothing is moving."""
    if state is ReplicationState.STREAMING:
        return 0.0
    if state in (ReplicationState.BROKEN, ReplicationState.STALLED, ReplicationState.NOT_SET_UP):
        return None
    return lag_eta(history.samples, now, settings.trend_seconds, lag_bytes)


def selected_databases(plan: Plan) -> tuple[str, ...]:
    """The source databases ``plan``'s selection includes (one catalog query)."""
    from ..catalog.discovery import list_databases
    from ..catalog.scope import with_database_from_url

    selection = with_database_from_url(plan.source, plan.selection)
    server = list_databases(plan.source)
    known = {db.name for db in server.databases}
    unknown = [rule.name for rule in selection.include_databases if rule.name not in known]
    if unknown:
        raise InputError(
            f"no database {', '.join(repr(name) for name in unknown)} on the source",
            "Databases on the source: " + (", ".join(sorted(known)) or "none"),
            title="Unknown database",
        )
    chosen = tuple(db.name for db in server.databases if selection.includes_database(db.name))
    if not chosen:
        raise InputError(
            "the selection leaves no database",
            "Check --include-databases / --exclude-databases; databases on the source: "
            + (", ".join(db.name for db in server.databases) or "none"),
            title="Nothing selected",
        )
    return chosen


def poll(
    plan_or_endpoints: Plan | tuple[Endpoint, Endpoint],
    databases: Sequence[str] | None = None,
    *,
    settings: MonitorSettings | None = None,
) -> MigrationStatus:
    """One poll with fresh connections (no trend, no ETA): for scripts and one-off checks."""
    if isinstance(plan_or_endpoints, Plan):
        monitor = Monitor.from_plan(plan_or_endpoints, databases, settings=settings)
    else:
        if databases is None:
            raise InputError("no database to monitor", "Pass the database names.")
        source, target = plan_or_endpoints
        monitor = Monitor(source, target, databases, settings=settings)
    with monitor:
        return monitor.poll()


class ApplyProgress:
    """How far a target has applied its subscription, as a source LSN, read cheaply and often.

    The highest of: the subscription origin's ``remote_lsn`` (end of the last applied
    commit; needs superuser or a grant on pg_show_replication_origin_status, tried once)
    and the apply worker's ``latest_end_lsn`` (the position of the walsender's last
    keepalive: the worker handles messages in order, so everything before it is applied).
    """

    def __init__(self, target_conn: psycopg.Connection[Any], subscription: str) -> None:
        self.conn = target_conn
        self.subscription = subscription
        self._origin_readable = True

    def lsn(self) -> int | None:
        row = self.conn.execute(_APPLIED_SQL, {"name": self.subscription}).fetchone()
        best = parse_lsn(row[0]) if row and row[0] else None
        if self._origin_readable:
            try:
                row = self.conn.execute(_ORIGIN_SQL, {"name": self.subscription}).fetchone()
            except psycopg.errors.InsufficientPrivilege:
                self._origin_readable = False
                row = None
            remote = parse_lsn(row[0]) if row and row[0] else None
            if remote is not None and (best is None or remote > best):
                best = remote
        return best


def confirmed_flush_lsn(source_conn: psycopg.Connection[Any], slot: str) -> int | None:
    row = source_conn.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", [slot]
    ).fetchone()
    return parse_lsn(row[0]) if row and row[0] else None


def current_insert_lsn(source_conn: psycopg.Connection[Any]) -> int:
    """A position at or after the end of every commit visible to a snapshot taken before it."""
    row = source_conn.execute(
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
        "ELSE pg_current_wal_insert_lsn() END::text"
    ).fetchone()
    assert row is not None
    return parse_lsn(row[0]) or 0


#: A WAL page header is at most this long: a position this close past a page start is
#: reached once everything up to the page start is (no record fits in between).
_PAGE_HEADER_MAX = 40


def lsn_reached(applied: int | None, wanted: int, wal_block_size: int = 8192) -> bool:
    if applied is None:
        return False
    if applied >= wanted:
        return True
    return applied % wal_block_size == 0 and wanted - applied <= _PAGE_HEADER_MAX
