"""The monitor's rules, without a server: every state and its reason from plain readings."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from pgtide.core.monitor.state import (
    History,
    MonitorSettings,
    ReplicationState,
    SlotStatus,
    SubscriptionStatus,
    lag_eta,
    replication_state,
    retained_level,
)

SETTINGS = MonitorSettings()
MB = 1024 * 1024


def _slot(**changes: Any) -> SlotStatus:
    base: dict[str, Any] = {"slot_name": "s", "exists": True, "current_lsn": 100 * MB, "active": True,
                            "confirmed_flush_lsn": 100 * MB, "restart_lsn": 99 * MB, "wal_status": "reserved"}
    return SlotStatus(**{**base, **changes})


def _sub(**changes: Any) -> SubscriptionStatus:
    base: dict[str, Any] = {"subscription_name": "sub", "exists": True, "enabled": True, "worker_pid": 42,
                            "table_counts": {"ready": 3}}
    return SubscriptionStatus(**{**base, **changes})


def _state(slot: SlotStatus, sub: SubscriptionStatus, history: History | None = None, *, now: float = 1000.0,
           errors: int = 0, lag_seconds: float | None = 0.0) -> tuple[ReplicationState, str]:
    lag = max(0, slot.current_lsn - (slot.confirmed_flush_lsn or 0)) if slot.exists else None
    return replication_state("db", slot, sub, history or History(), now, lag, lag_seconds, errors,
                             settings=SETTINGS, slot_name="s")


def test_streaming_when_caught_up() -> None:
    assert _state(_slot(), _sub()) == (ReplicationState.STREAMING, "caught up")


def test_not_set_up_and_the_missing_halves() -> None:
    state, reason = _state(_slot(exists=False), _sub(exists=False, database_exists=False))
    assert state is ReplicationState.NOT_SET_UP and "does not exist on the target" in reason
    assert _state(_slot(), _sub(exists=False))[0] is ReplicationState.COPYING
    state, reason = _state(_slot(exists=False), _sub())
    assert state is ReplicationState.BROKEN and "gone" in reason


def test_an_invalidated_slot_is_broken() -> None:
    state, reason = _state(_slot(wal_status="lost"), _sub())
    assert state is ReplicationState.BROKEN and "new copy" in reason


def test_tables_still_syncing_are_copying() -> None:
    state, reason = _state(_slot(), _sub(table_counts={"ready": 1, "data copy": 2}))
    assert state is ReplicationState.COPYING and reason.startswith("2 of 3 tables not ready")


def test_errors_and_disabled_subscriptions() -> None:
    history = History(errors_grew_at=990.0)
    state, reason = _state(_slot(), _sub(apply_error_count=2), history, errors=2)
    assert state is ReplicationState.BROKEN and "2 apply error(s)" in reason
    assert _state(_slot(), _sub(enabled=False), history)[0] is ReplicationState.BROKEN
    assert _state(_slot(), _sub(enabled=False))[0] is ReplicationState.STALLED
    # Old errors that stopped growing, with the worker running, do not keep it broken.
    assert _state(_slot(), _sub(apply_error_count=2), History(errors_grew_at=10.0), errors=2)[0] \
        is ReplicationState.STREAMING


def test_stalls_need_time() -> None:
    lagging = _slot(confirmed_flush_lsn=10 * MB)  # 90 MB behind
    assert _state(lagging, _sub(), History(confirmed_moved_at=995.0), lag_seconds=None)[0] \
        is ReplicationState.CATCHING_UP
    state, reason = _state(lagging, _sub(), History(confirmed_moved_at=900.0), lag_seconds=None)
    assert state is ReplicationState.STALLED and "confirmed nothing for 100 s" in reason
    assert _state(_slot(active=False), _sub(), History(slot_inactive_since=999.0))[0] is ReplicationState.CATCHING_UP
    assert _state(_slot(active=False), _sub(), History(slot_inactive_since=900.0))[0] is ReplicationState.STALLED
    state, reason = _state(_slot(), _sub(worker_pid=None), History(worker_missing_since=900.0))
    assert state is ReplicationState.STALLED and "max_logical_replication_workers" in reason


@pytest.mark.parametrize(("retained", "limit", "expected"), [
    (10 * MB, 100 * MB, "ok"), (75 * MB, 100 * MB, "warning"), (95 * MB, 100 * MB, "critical")])
def test_retained_wal_against_the_slot_limit(retained: int, limit: int, expected: str) -> None:
    level, reason = retained_level(_slot(max_slot_wal_keep_size=limit), retained, SETTINGS)
    assert level == expected and (expected == "ok" or "max_slot_wal_keep_size" in reason)


def test_eta_from_the_lag_trend() -> None:
    # Falling 5 MB/s: 50 MB to go is 10 s; a trend needs three samples over two seconds.
    samples: deque[tuple[float, int]] = deque([(0.0, 100 * MB), (5.0, 75 * MB), (10.0, 50 * MB)])
    assert lag_eta(samples, 10.0, 60.0, 50 * MB) == pytest.approx(10.0)
    assert lag_eta(deque([(0.0, 100 * MB), (10.0, 50 * MB)]), 10.0, 60.0, 50 * MB) is None  # too few samples
    growing: deque[tuple[float, int]] = deque([(0.0, 10 * MB), (5.0, 15 * MB), (10.0, 20 * MB)])
    assert lag_eta(growing, 10.0, 60.0, 20 * MB) is None
    assert lag_eta(samples, 10.0, 60.0, 0) == 0.0
