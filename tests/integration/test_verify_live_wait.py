"""A live re-check waits its own timeout, however long the table's comparison took before it."""

from __future__ import annotations

import time

from pgharness import PgCluster, wait_for
from psycopg import sql

from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.events import CancelToken
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.monitor.poll import current_insert_lsn
from pgtide.core.verify.connections import _Pair
from pgtide.core.verify.live import _Waiter
from pgtide.core.verify.runner import detect_live


def test_a_recheck_after_a_long_comparison_still_waits_for_the_target(source_cluster: PgCluster,
                                                                      target_cluster: PgCluster) -> None:
    db = source_cluster.create_database()
    source_cluster.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", dbname=db)
    source, target = Endpoint.parse(source_cluster.url(db), env={}), Endpoint.parse(target_cluster.url(db), env={})
    try:
        migrate.init(Plan(source, target, Selection.from_cli(include_databases=db), Options(jobs=1)))
        live = detect_live(source, target, db)
        assert live is not None
        pair = _Pair(source, target, CancelToken())
        try:
            waiter = _Waiter(pair, live, 5.0, 8192)
            time.sleep(5.5)  # the table's comparison so far took longer than the re-check timeout
            # Replication paused for a moment: the position is certainly not applied at the first look.
            subscription = sql.Identifier(live.subscription)
            target_cluster.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(subscription), dbname=db)
            wait_for(lambda: source_cluster.execute("SELECT bool_or(active) FROM pg_replication_slots")
                     == [(False,)], timeout=30, what="the apply worker to stop")
            source_cluster.execute("INSERT INTO t VALUES (1, 'late')", dbname=db)
            position = current_insert_lsn(pair.source)
            target_cluster.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(subscription), dbname=db)
            assert waiter.wait(position) and not waiter.timed_out
        finally:
            pair.close()
    finally:
        for cluster in (target_cluster, source_cluster):
            cluster.clean_replication()
            cluster.drop_database(db)
