"""What a migration's replication state is, from what the servers report: plain data and pure rules.

The polling (monitor/poll.py) reads the servers; this module decides. Nothing here connects
to anything, so every state and its reason is a unit test (tests/unit/test_monitor_state.py).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

from ..infra.formatting import human_bytes
from .drift import DriftReport

# -- LSNs ---------------------------------------------------------------------------------


def parse_lsn(text: str | None) -> int | None:
    """``'16/B374D848'`` -> byte position (None stays None)."""
    if text is None:
        return None
    high, _, low = str(text).partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int | None) -> str | None:
    if value is None:
        return None
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def interval_seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


# -- the typed answer -----------------------------------------------------------------------


class ReplicationState(str, Enum):
    """What a database's replication is doing, in the order a migration goes through them."""

    NOT_SET_UP = "not set up"
    COPYING = "copying"
    CATCHING_UP = "catching up"
    STREAMING = "streaming"
    STALLED = "stalled"
    BROKEN = "broken"

    def __str__(self) -> str:
        return self.value

    @property
    def healthy(self) -> bool:
        return self in (ReplicationState.COPYING, ReplicationState.CATCHING_UP, ReplicationState.STREAMING)


WarningLevel = Literal["ok", "warning", "critical"]

#: pg_subscription_rel.srsubstate codes and what they mean.
TABLE_STATES: Mapping[str, str] = MappingProxyType(
    {"i": "init", "d": "data copy", "f": "finished", "s": "sync", "r": "ready"}
)


@dataclass(frozen=True)
class SlotStatus:
    """The source side of one database: its slot and the walsender serving it."""

    slot_name: str
    exists: bool
    #: The source's current WAL position (replay position when the source is a standby).
    current_lsn: int
    active: bool = False
    active_pid: int | None = None
    confirmed_flush_lsn: int | None = None
    restart_lsn: int | None = None
    #: reserved / extended / unreserved / lost (NULL-able on the server).
    wal_status: str | None = None
    safe_wal_size: int | None = None
    #: Why the slot was invalidated (PG17+: invalidation_reason; PG16: 'conflict').
    invalidation_reason: str | None = None
    walsender_state: str | None = None
    sent_lsn: int | None = None
    write_lsn: int | None = None
    flush_lsn: int | None = None
    replay_lsn: int | None = None
    write_lag: float | None = None
    flush_lag: float | None = None
    replay_lag: float | None = None
    reply_time: datetime | None = None
    #: max_slot_wal_keep_size in bytes; None when unlimited (-1).
    max_slot_wal_keep_size: int | None = None
    server_version_num: int = 0


@dataclass(frozen=True)
class TableSyncState:
    schema: str
    name: str
    #: init / data copy / finished / sync / ready
    state: str
    lsn: int | None = None


@dataclass(frozen=True)
class SubscriptionStatus:
    """The target side of one database: its subscription, apply worker and tables."""

    subscription_name: str
    exists: bool
    #: False when the target database itself does not exist (yet).
    database_exists: bool = True
    enabled: bool = False
    slot_name: str | None = None
    worker_pid: int | None = None
    received_lsn: int | None = None
    latest_end_lsn: int | None = None
    last_msg_send_time: datetime | None = None
    last_msg_receipt_time: datetime | None = None
    latest_end_time: datetime | None = None
    sync_workers: int = 0
    #: Tables per state label (init / data copy / finished / sync / ready).
    table_counts: Mapping[str, int] = field(default_factory=dict)
    #: Tables not ready yet (at most ``MonitorSettings.pending_table_limit``).
    pending_tables: tuple[TableSyncState, ...] = ()
    #: pg_stat_subscription_stats (PG15+); None on older servers.
    apply_error_count: int | None = None
    sync_error_count: int | None = None
    #: PG18+ conflict counters (insert_exists, update_missing, ...); empty before.
    conflict_counts: Mapping[str, int] = field(default_factory=dict)
    #: The apply/sync worker's last error, from the target's server log when readable.
    last_error: str | None = None
    #: The table that change was for, and the source commit LSN of the failing transaction
    #: (what ALTER SUBSCRIPTION ... SKIP takes), from the same log lines.
    failed_table: str | None = None
    failed_lsn: int | None = None
    #: disable_on_error (PG15+): a failing change disables the subscription instead of a retry loop.
    disable_on_error: bool | None = None
    server_version_num: int = 0

    @property
    def tables_total(self) -> int:
        return sum(self.table_counts.values())

    @property
    def tables_ready(self) -> int:
        return self.table_counts.get("ready", 0)


@dataclass(frozen=True)
class DatabaseStatus:
    database: str
    source: SlotStatus
    target: SubscriptionStatus
    state: ReplicationState
    reason: str
    #: current WAL - confirmed_flush_lsn (None when there is no slot).
    lag_bytes: int | None
    #: walsender replay/flush lag; 0 when caught up; None when unknown.
    lag_seconds: float | None
    retained_wal_bytes: int | None
    retained_warning: WarningLevel
    retained_reason: str
    #: Estimated seconds until caught up, from the recent lag trend (None: not shrinking).
    eta_seconds: float | None
    polled_at: datetime
    #: Schema drift between the two catalogs (monitor/drift.py); None when not read (yet).
    drift: DriftReport | None = None

    @property
    def healthy(self) -> bool:
        return self.state.healthy

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (LSNs as 'X/Y' text, times ISO 8601)."""
        data: dict[str, Any] = _jsonable(self)
        return data


@dataclass(frozen=True)
class MigrationStatus:
    databases: tuple[DatabaseStatus, ...]
    polled_at: datetime

    @property
    def healthy(self) -> bool:
        return all(db.healthy for db in self.databases)

    @property
    def drifted(self) -> bool:
        return any(db.drift is not None and db.drift.drifted for db in self.databases)

    def database(self, name: str) -> DatabaseStatus | None:
        return next((db for db in self.databases if db.database == name), None)


_LSN_KEYS = re.compile(r"(^|_)lsn$")


def _jsonable(value: Any, key: str = "") -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name), f.name) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _jsonable(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool) and _LSN_KEYS.search(key):
        return format_lsn(value)
    return value


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorSettings:
    """Thresholds that turn facts into a state. The defaults suit a 1-2 s poll."""

    #: Lag at or under which a database counts as streaming (bytes and seconds).
    streaming_lag_bytes: int = 16 * 1024 * 1024
    streaming_lag_seconds: float = 10.0
    #: No confirmed progress for this long while lagging (or no walsender) is a stall.
    stall_seconds: float = 30.0
    #: An error counter that grew this recently keeps the database "broken".
    error_window_seconds: float = 60.0
    #: Retained WAL as a share of max_slot_wal_keep_size that warns / is critical.
    retained_warning_fraction: float = 0.7
    retained_critical_fraction: float = 0.9
    #: With max_slot_wal_keep_size = -1 (unlimited) warn above this many bytes.
    retained_warning_bytes: int = 8 * 1024**3
    #: Lag samples this recent feed the trend and the time-to-catch-up estimate.
    trend_seconds: float = 60.0
    pending_table_limit: int = 100
    statement_timeout_ms: int = 5000
    #: Schema drift is read this often (two catalog queries per database); 0 turns it off.
    drift_interval_seconds: float = 30.0


# -- version-aware SQL (every query of this module) ---------------------------------------------




@dataclass(frozen=True)
class WorkerFailure:
    """A subscription worker's last error as the target's log tells it."""

    error: str
    #: The table the failing change was for ("schema.table" as the server printed it).
    table: str | None = None
    #: The failing remote transaction's commit LSN ("finished at"): what SKIP (lsn = ...) takes.
    finish_lsn: int | None = None



@dataclass
class History:
    """What one database looked like over the last polls: for trends, stalls, errors."""

    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=600))
    last_confirmed: int | None = None
    confirmed_moved_at: float | None = None
    errors_seen: int | None = None
    errors_grew_at: float | None = None
    worker_missing_since: float | None = None
    slot_inactive_since: float | None = None
    cached_error: tuple[int, WorkerFailure | None] | None = None



def replication_state(
    database: str,
    slot: SlotStatus,
    sub: SubscriptionStatus,
    history: History,
    now: float,
    lag_bytes: int | None,
    lag_seconds: float | None,
    errors: int,
    *,
    settings: MonitorSettings,
    slot_name: str,
) -> tuple[ReplicationState, str]:
    """The state and its reason, from one poll's readings and what earlier polls saw. Pure."""
    if not slot.exists and not sub.exists:
        where = "" if sub.database_exists else f" (database {database!r} does not exist on the target)"
        return ReplicationState.NOT_SET_UP, f"no slot {slot_name} on the source and no subscription{where}"
    if slot.exists and (slot.wal_status == "lost" or slot.invalidation_reason):
        why = slot.invalidation_reason or "the WAL it needs was removed"
        return ReplicationState.BROKEN, (
            f"slot {slot.slot_name} is invalidated ({why}); the migration must restart from a new copy"
        )
    if not slot.exists:
        return ReplicationState.BROKEN, f"subscription {sub.subscription_name} exists but the source slot " \
            f"{slot.slot_name} is gone"
    if not sub.exists:
        return ReplicationState.COPYING, (
            "slot created, subscription not created yet (initial copy running or interrupted)"
        )
    recent_errors = history.errors_grew_at is not None and now - history.errors_grew_at <= settings.error_window_seconds
    failing = errors > 0 and (sub.worker_pid is None or not slot.active)
    if not sub.enabled:
        # With disable_on_error the server disables the subscription at the first failing
        # change: the counter it left is the reason, even for a status that polls once.
        if recent_errors or (sub.disable_on_error and sub.apply_error_count):
            return ReplicationState.BROKEN, "subscription disabled after an apply error"
        return ReplicationState.STALLED, f"subscription {sub.subscription_name} is disabled"
    if recent_errors or failing:
        kinds = []
        if sub.apply_error_count:
            kinds.append(f"{sub.apply_error_count} apply error(s)")
        if sub.sync_error_count:
            kinds.append(f"{sub.sync_error_count} table sync error(s)")
        return ReplicationState.BROKEN, "replication worker failing, " + ", ".join(kinds or ["errors"])
    if history.worker_missing_since is not None and now - history.worker_missing_since >= settings.stall_seconds:
        return ReplicationState.STALLED, (
            f"no apply worker running for {now - history.worker_missing_since:.0f} s "
            "(check max_logical_replication_workers and the target's log)"
        )
    pending = sub.tables_total - sub.tables_ready
    if pending > 0:
        states = ", ".join(
            f"{count} {label}" for label, count in sub.table_counts.items() if count and label != "ready"
        )
        return ReplicationState.COPYING, f"{pending} of {sub.tables_total} tables not ready ({states})"
    lagging = lag_bytes is not None and lag_bytes > settings.streaming_lag_bytes
    if history.slot_inactive_since is not None:
        inactive = now - history.slot_inactive_since
        if inactive >= settings.stall_seconds:
            return ReplicationState.STALLED, f"no walsender has used slot {slot.slot_name} for {inactive:.0f} s"
        return ReplicationState.CATCHING_UP, (
            f"{_size(lag_bytes)} behind; waiting for the target to connect to slot {slot.slot_name}"
        )
    if (
        lagging
        and history.confirmed_moved_at is not None
        and now - history.confirmed_moved_at >= settings.stall_seconds
    ):
        return ReplicationState.STALLED, (
            f"the target confirmed nothing for {now - history.confirmed_moved_at:.0f} s while "
            f"{_size(lag_bytes)} behind"
        )
    slow = lag_seconds is not None and lag_seconds > settings.streaming_lag_seconds
    if lagging or slow:
        return ReplicationState.CATCHING_UP, f"{_size(lag_bytes)} behind" + (
            f", {lag_seconds:.1f} s" if lag_seconds is not None else ""
        )
    return ReplicationState.STREAMING, "caught up" if not lag_bytes else f"{_size(lag_bytes)} behind"


def _size(value: int | None) -> str:
    return human_bytes(value, missing="?")


def retained_level(slot: SlotStatus, retained: int | None, settings: MonitorSettings) -> tuple[WarningLevel, str]:
    """How close the slot's retained WAL is to being a problem for the source's disk."""
    if not slot.exists:
        return "ok", ""
    if slot.wal_status == "lost" or slot.invalidation_reason:
        return "critical", "the slot lost WAL it needs"
    if retained is None:
        return "ok", ""
    if slot.wal_status == "unreserved":
        return "critical", "retained WAL is past max_slot_wal_keep_size: the next checkpoint invalidates the slot"
    limit = slot.max_slot_wal_keep_size
    if limit:
        fraction = retained / limit
        shown = f"{_size(retained)} retained of max_slot_wal_keep_size {_size(limit)} ({fraction:.0%})"
        if fraction >= settings.retained_critical_fraction:
            return "critical", shown
        if fraction >= settings.retained_warning_fraction:
            return "warning", shown
    elif retained >= settings.retained_warning_bytes:
        return "warning", f"{_size(retained)} retained and max_slot_wal_keep_size is unlimited"
    if slot.wal_status == "extended":
        return "warning", f"{_size(retained)} retained, beyond max_wal_size (wal_status extended)"
    return "ok", ""


def lag_eta(samples: deque[tuple[float, int]], now: float, window: float, lag: int | None) -> float | None:
    """Seconds until the lag reaches zero at the rate it fell over the last ``window`` seconds."""
    if not lag:
        return 0.0 if lag == 0 else None
    recent = [(t, v) for t, v in samples if now - t <= window]
    if len(recent) < 3 or recent[-1][0] - recent[0][0] < 2.0:
        return None
    mean_t = sum(t for t, _ in recent) / len(recent)
    mean_v = sum(v for _, v in recent) / len(recent)
    var = sum((t - mean_t) ** 2 for t, _ in recent)
    if var <= 0:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in recent) / var
    if slope >= 0:
        return None
    return lag / -slope


# -- helpers the rest of core uses ------------------------------------------------------------
