"""Verify borrows the command's pooled sessions and hands them back as it found them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pgharness import PgCluster, wait_for

from pgtide.core.infra.db import connect, connection_pools
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.events import Cancelled, CancelToken
from pgtide.core.model.plan import Plan
from pgtide.core.model.selection import Selection
from pgtide.core.verify.compare import ChunkVerified, RangesListed, Verifier, VerifyOptions, verify_plan

ROWS = 40_000
#: Everything verify pins on its sessions, and how transactions start there.
SETTINGS = ("TimeZone", "DateStyle", "search_path", "statement_timeout", "work_mem", "jit", "enable_sort",
            "application_name", "transaction_isolation", "transaction_read_only")


@pytest.fixture
def plan(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[Plan]:
    name = source_cluster.create_database()
    target_cluster.create_database(name)
    for cluster in (source_cluster, target_cluster):
        cluster.execute("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text); "
                        f"INSERT INTO items SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g",
                        dbname=name)
    target_cluster.execute("DELETE FROM items WHERE id % 10 = 3", dbname=name)
    yield Plan(Endpoint.parse(source_cluster.url(name), env={}), Endpoint.parse(target_cluster.url(name), env={}),
               Selection.from_cli(include_databases=name))
    target_cluster.drop_database(name)
    source_cluster.drop_database(name)


def session_state(endpoint: Endpoint) -> tuple[Any, ...]:
    """What a borrower of ``endpoint`` finds: every setting verify changes, inside a transaction."""
    with connect(endpoint) as conn, conn.transaction():
        return tuple(conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS)  # type: ignore[index]


def fresh_state(endpoint: Endpoint) -> tuple[Any, ...]:
    with connect(endpoint, pooled=False) as conn, conn.transaction():
        return tuple(conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS)  # type: ignore[index]


def test_verify_reuses_pool_members_and_leaves_them_as_new(
    plan: Plan, source_cluster: PgCluster, target_cluster: PgCluster
) -> None:
    # Small units: several listings, so the source's lookups run on a second, snapshot-sharing session.
    options = VerifyOptions(stream_rows=5000, live=False)
    verify_pids: dict[str, set[int]] = {"source": set(), "target": set()}

    def seen(event: object) -> None:  # while verify holds its sessions: which backends are they?
        if isinstance(event, RangesListed | ChunkVerified):
            for side, cluster in (("source", source_cluster), ("target", target_cluster)):
                verify_pids[side] |= {row[0] for row in cluster.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgtide-verify'")}

    with connection_pools() as pools:
        (result,) = verify_plan(plan, options=options, on_event=seen).tables
        assert (result.missing, result.extra, result.different) == (ROWS // 10, 0, 0)
        opened = pools.opened
        assert opened > 0 and verify_pids["source"] and verify_pids["target"]
        # Those backends are the pools' own members, back now: borrowing every member finds them.
        for side, endpoint in (("source", plan.source), ("target", plan.target)):
            held = [connect(endpoint) for _ in range(pools.max_size)]
            try:
                members = {conn.info.backend_pid for conn in held if getattr(conn, "_pool", None) is not None}
            finally:
                for conn in held:
                    conn.close()
            assert verify_pids[side] <= members, (side, verify_pids[side], members)
        opened = pools.opened
        (again,) = verify_plan(plan, options=options).tables
        assert again.missing == ROWS // 10
        assert pools.opened == opened  # the second run borrowed the same sessions back
        for endpoint in (plan.source, plan.target):
            state = session_state(endpoint)
            assert state == fresh_state(endpoint)
            assert "repeatable read" not in state and "pgtide-verify" not in state
        assert pools.opened == opened


def test_a_cancelled_verify_hands_its_sessions_back_reset(plan: Plan, target_cluster: PgCluster) -> None:
    token = CancelToken()
    outcome: list[BaseException | None] = []
    with connection_pools():
        def run() -> None:
            try:
                verify_plan(plan, verifier=Verifier(VerifyOptions(live=False), cancel=token))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        with target_cluster.connect(plan.target.dbname, autocommit=False) as blocker:
            blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            wait_for(lambda: target_cluster.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgtide-verify' "
                "AND wait_event_type = 'Lock'")[0][0] > 0, what="verify to wait on the lock")
            token.cancel()
            thread.join(timeout=25)
            blocker.rollback()
        assert not thread.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Cancelled), outcome
        for endpoint in (plan.source, plan.target):
            assert session_state(endpoint) == fresh_state(endpoint)
