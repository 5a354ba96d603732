"""The monitor against live subscriptions: states, lag, errors, retained WAL, PG 15/16/18."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from pgharness import PgCluster, wait_for
from psycopg import sql

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Plan
from pgtide.core.model.selection import Selection
from pgtide.core.monitor.poll import MigrationStatus, Monitor, ReplicationState
from pgtide.core.replication.naming import ReplicationNames, replication_names
from pgtide.core.verify.compare import VerifyOptions, verify_plan

TABLES = ("alpha", "beta", "gamma")


def endpoints(source: PgCluster, target: PgCluster, name: str) -> tuple[Endpoint, Endpoint]:
    return Endpoint.parse(source.url(name), env={}), Endpoint.parse(target.url(name), env={})


def set_up(source: PgCluster, target: PgCluster, name: str, *, copy_data: bool = False, rows: int = 0,
           create_subscription: bool = True) -> ReplicationNames:
    """Tables on both sides, then pgtide's publication, slot and subscription for them."""
    names = replication_names(*endpoints(source, target, name), name)
    for cluster in (source, target) if target is not source else (source,):
        with cluster.connect(name) as conn:
            for table in TABLES:
                conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, payload text)").format(sql.Identifier(table)))
    if rows:
        with source.connect(name) as conn:
            for table in TABLES:
                conn.execute(sql.SQL("INSERT INTO {} SELECT g, repeat('x', 100) FROM generate_series(1, %s) g").format(
                    sql.Identifier(table)), [rows])
    source.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        sql.Identifier(names.publication), sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)), dbname=name)
    with psycopg.connect(host="127.0.0.1", port=source.port, user="postgres", dbname=name, replication="database",
                         autocommit=True, cursor_factory=psycopg.ClientCursor) as repl:
        repl.execute(f"CREATE_REPLICATION_SLOT {names.slot} LOGICAL pgoutput")
    if create_subscription:
        target.execute(
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                    "WITH (create_slot = false, slot_name = {}, copy_data = {})").format(
                sql.Identifier(names.subscription),
                sql.Literal(f"host=127.0.0.1 port={source.port} user=postgres dbname={name}"),
                sql.Identifier(names.publication), sql.Literal(names.slot), sql.Literal(copy_data)),
            dbname=name,
        )
    return names


def poll_until(monitor: Monitor, predicate: Callable[[MigrationStatus], bool], what: str,
               timeout: float = 30.0) -> MigrationStatus:
    seen: list[MigrationStatus] = []

    def check() -> bool:
        seen.append(monitor.poll())
        return predicate(seen[-1])

    try:
        wait_for(check, timeout=timeout, interval=0.2, what=what)
    except AssertionError:
        last = seen[-1].databases[0] if seen else None
        raise AssertionError(f"{what}; last status: {last and (last.state, last.reason, last.lag_bytes)}") from None
    return seen[-1]


@pytest.fixture
def twin(source_cluster: PgCluster, target_cluster: PgCluster):  # type: ignore[no-untyped-def]
    """A database of the same name on both session clusters."""
    name = source_cluster.create_database()
    target_cluster.create_database(name)
    yield name
    target_cluster.clean_replication()
    source_cluster.clean_replication()
    target_cluster.drop_database(name)
    source_cluster.drop_database(name)


def test_states_lag_and_recovery_on_a_live_subscription(
    source_cluster: PgCluster, target_cluster: PgCluster, twin: str
) -> None:
    source, target = endpoints(source_cluster, target_cluster, twin)
    with Monitor(source, target, [twin]) as monitor:
        (db,) = monitor.poll().databases
        assert db.state is ReplicationState.NOT_SET_UP and not db.healthy
        assert not db.source.exists and not db.target.exists

        set_up(source_cluster, target_cluster, twin, copy_data=True, rows=2000)
        # The tables start in init (or data copy): the database is copying.
        (db,) = monitor.poll().databases
        assert db.state is ReplicationState.COPYING, db.reason
        assert db.target.tables_total == 3 and db.target.tables_ready < 3
        assert db.target.table_counts["init"] + db.target.table_counts["data copy"] + \
            db.target.table_counts["finished"] + db.target.table_counts["sync"] > 0
        assert {t.name for t in db.target.pending_tables} <= set(TABLES)

        status = poll_until(monitor, lambda s: s.databases[0].state is ReplicationState.STREAMING,
                            "all tables ready and streaming")
        db = status.databases[0]
        assert db.target.tables_ready == 3 and db.target.pending_tables == ()
        assert db.source.active and db.source.walsender_state == "streaming" and db.target.worker_pid
        assert db.target.apply_error_count == 0 and db.eta_seconds == 0.0
        assert db.lag_bytes is not None and db.lag_bytes < 1024 * 1024
        assert db.retained_wal_bytes is not None and db.retained_warning == "ok"
        json.dumps(db.to_dict())  # serialisable as is

        # The target stops applying while the source writes: the lag grows, the state says why.
        target_cluster.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(
            sql.Identifier(db.target.subscription_name)), dbname=twin)
        source_cluster.execute("INSERT INTO alpha SELECT g, repeat('y', 200) FROM generate_series(10001, 30000) g",
                               dbname=twin)
        status = poll_until(monitor, lambda s: (s.databases[0].lag_bytes or 0) > 3 * 1024 * 1024,
                            "the lag to grow past 3 MB")
        db = status.databases[0]
        assert db.state is ReplicationState.STALLED and "disabled" in db.reason
        assert not db.target.enabled

        target_cluster.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(
            sql.Identifier(db.target.subscription_name)), dbname=twin)
        (db,) = monitor.poll().databases
        assert db.state in (ReplicationState.CATCHING_UP, ReplicationState.STREAMING) and db.healthy
        if not db.source.active:  # the launcher restarts the worker a few seconds later
            assert db.state is ReplicationState.CATCHING_UP and "waiting for the target" in db.reason
        wait_for(lambda: target_cluster.execute("SELECT count(*) FROM alpha", dbname=twin)[0][0] == 22000,
                 what="the rows written while disabled to arrive")
        poll_until(monitor, lambda s: (s.databases[0].lag_bytes or 0) < 64 * 1024
                   and s.databases[0].state is ReplicationState.STREAMING, "the lag to fall back to ~0")

        # The command line agrees: exit 0 when healthy, one JSON object per database.
        pgtide = str(Path(sys.executable).parent / "pgtide")
        base = [pgtide, "status", "--source", source_cluster.url(twin), "--target", target_cluster.url(twin),
                "--include-databases", twin]
        out = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        line = json.loads(out.stdout)
        assert line["database"] == twin and line["state"] == "streaming" and "/" in line["source"]["current_lsn"]
        out = subprocess.run(base, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "streaming" in out.stdout and "3/3" in out.stdout


def test_apply_error_is_broken_with_the_error_text(
    source_cluster: PgCluster, source_db: str, cluster_factory: Callable[..., PgCluster]
) -> None:
    # The error text lives only in the server log: let the target keep one pgtide can read.
    target = cluster_factory(logging_collector="on", log_directory="log")
    target.create_database(source_db)
    try:
        set_up(source_cluster, target, source_db)
        source, target_ep = endpoints(source_cluster, target, source_db)
        with Monitor(source, target_ep, [source_db]) as monitor:
            poll_until(monitor, lambda s: s.databases[0].state is ReplicationState.STREAMING, "streaming")
            target.execute("INSERT INTO beta VALUES (7, 'only on the target')", dbname=source_db)
            source_cluster.execute("INSERT INTO beta VALUES (7, 'conflicts on the target')", dbname=source_db)
            status = poll_until(monitor, lambda s: s.databases[0].state is ReplicationState.BROKEN
                                and s.databases[0].target.last_error is not None, "the apply error to show")
            db = status.databases[0]
            assert db.target.apply_error_count and db.target.apply_error_count >= 1
            assert "duplicate key" in (db.target.last_error or "") and "beta_pkey" in db.reason
    finally:
        target.clean_replication()


def test_retained_wal_warning_and_lost_slot(cluster_factory: Callable[..., PgCluster]) -> None:
    source = cluster_factory(max_slot_wal_keep_size="64MB", max_wal_size="32MB", min_wal_size="32MB")
    name = source.create_database("retained")
    set_up(source, source, name, create_subscription=False)
    ep = Endpoint.parse(source.url(name), env={})
    with Monitor(ep, ep, [name]) as monitor:
        (db,) = monitor.poll().databases
        assert db.state is ReplicationState.COPYING and db.retained_warning == "ok"  # slot, no subscription yet
        assert db.source.max_slot_wal_keep_size == 64 * 1024 * 1024
        with source.connect(name) as conn:
            for row in range(4):  # each switch moves the current position to the next 16 MB segment
                conn.execute("INSERT INTO alpha VALUES (%s, 'x')", [row])
                conn.execute("SELECT pg_switch_wal()")
        (db,) = monitor.poll().databases
        assert db.retained_wal_bytes is not None and db.retained_wal_bytes > 48 * 1024 * 1024
        assert db.retained_warning in ("warning", "critical") and "max_slot_wal_keep_size" in db.retained_reason
        with source.connect(name) as conn:
            for row in range(4, 7):
                conn.execute("INSERT INTO alpha VALUES (%s, 'x')", [row])
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
        (db,) = monitor.poll().databases
        assert db.state is ReplicationState.BROKEN and "invalidated" in db.reason
        assert db.retained_warning == "critical"


@pytest.mark.crossversion
def test_monitor_and_verify_queries_on_pg16_and_pg18(cluster_factory: Callable[..., PgCluster]) -> None:
    pg16 = cluster_factory(major=16)
    pg18 = cluster_factory(major=18)
    name = pg16.create_database("xv")
    pg18.create_database(name)
    set_up(pg16, pg18, name, copy_data=True, rows=500)
    source, target = endpoints(pg16, pg18, name)
    with Monitor(source, target, [name]) as monitor:
        status = poll_until(monitor, lambda s: s.databases[0].state is ReplicationState.STREAMING, "streaming")
        db = status.databases[0]
        assert db.source.server_version_num // 10000 == 16 and db.target.server_version_num // 10000 == 18
        assert db.target.tables_ready == 3 and db.target.worker_pid and db.target.apply_error_count == 0
        assert set(db.target.conflict_counts) >= {"insert_exists", "update_missing"}  # PG18 counters
    # The other way round: PG18's source query, PG16's target query (nothing set up there).
    with Monitor(Endpoint.parse(pg18.url(name), env={}), Endpoint.parse(pg16.url(name), env={}), [name]) as monitor:
        (db,) = monitor.poll().databases
        assert db.state is ReplicationState.NOT_SET_UP
        assert db.source.server_version_num // 10000 == 18
    # Verify across versions: same rows on 16 and 18 (through replication) match.
    plan = Plan(source, target, Selection.from_cli(include_databases=name))
    report = verify_plan(plan, options=VerifyOptions(recheck_timeout=10))
    assert report.ok and len(report.tables) == 3 and report.live_databases == (name,)
    pg18.clean_replication()
    pg16.clean_replication()
