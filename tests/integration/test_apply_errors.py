"""A change the target cannot apply: the subscription stops (disable_on_error), status says why
and on which table, and `pgtide sync --skip-failed-transaction` skips it, losing only its rows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from engine_support import table_rows
from pgharness import PgCluster, wait_for
from psycopg import sql

from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.jobs.store import JobStore
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.monitor.poll import Monitor, ReplicationState
from pgtide.core.replication.naming import migration_id
from pgtide.core.verify.compare import VerifyOptions, verify_plan

PGTIDE = str(Path(sys.executable).parent / "pgtide")
DB = "apply_errors"


def _url(cluster: PgCluster) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{DB}"


def test_a_conflicting_row_disables_the_subscription_and_skip_resumes_it(
        source_cluster: PgCluster, cluster_factory: Callable[..., PgCluster]) -> None:
    # The error text and the failing transaction's LSN live in the server log.
    target = cluster_factory(logging_collector="on", log_directory="log")
    source = source_cluster
    source.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    try:
        source.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner text); "
                       "INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 100) g; "
                       "CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1);", dbname=DB)
        plan = Plan(Endpoint.parse(_url(source), env={}), Endpoint.parse(_url(target), env={}), Selection(),
                    Options(jobs=1))
        assert [r.status for r in migrate.init(plan)] == ["streaming"]
        assert target.execute("SELECT subdisableonerr FROM pg_subscription", dbname=DB) == [(True,)]

        target.execute("INSERT INTO accounts VALUES (500, 'planted on the target')", dbname=DB)
        with source.connect(DB) as conn, conn.transaction():
            # One transaction: skipping it loses all three rows and the change to "other".
            conn.execute("INSERT INTO accounts VALUES (499, 'a'), (500, 'b'), (501, 'c')")
            conn.execute("INSERT INTO other VALUES (2)")

        with Monitor.from_plan(plan, [DB]) as monitor:
            def stopped() -> bool:
                db = monitor.poll().databases[0]
                return db.state is ReplicationState.BROKEN and not db.target.enabled and db.target.failed_lsn is not None
            wait_for(stopped, timeout=60, interval=0.3, what="the subscription to stop on the conflict")
            db = monitor.poll().databases[0]
        assert "duplicate key" in (db.target.last_error or ""), db
        assert db.target.failed_table == "public.accounts", db.target
        assert "--skip-failed-transaction" in db.reason and "sync --enable" in db.reason

        base = ["--source", _url(source), "--target", _url(target)]
        status = subprocess.run([PGTIDE, "status", *base], capture_output=True, text=True, timeout=60)
        assert status.returncode == 1 and "broken" in status.stdout and "duplicate key" in status.stdout, status.stdout
        assert "public.accounts" in status.stdout
        asked = subprocess.run([PGTIDE, "sync", *base, "--skip-failed-transaction"], capture_output=True, text=True,
                               timeout=60)
        assert asked.returncode == 2 and "WARNING" in asked.stdout, asked.stdout + asked.stderr
        assert target.execute("SELECT subenabled FROM pg_subscription", dbname=DB) == [(False,)]
        store = JobStore(migration_id(plan.source, plan.target))
        store.record_verify({"ok": True, "tables": 2})  # a clean verify from before the conflict
        skipped = subprocess.run([PGTIDE, "sync", *base, "--skip-failed-transaction", "--yes"],
                                 capture_output=True, text=True, timeout=60)
        assert skipped.returncode == 0, skipped.stdout + skipped.stderr
        assert "its rows are lost" in skipped.stdout or "rows will differ" in skipped.stdout, skipped.stdout
        # The target no longer matches what that verify saw: cutover must verify again.
        assert "last_verify" not in JobStore(migration_id(plan.source, plan.target)).meta()

        source.execute("INSERT INTO accounts VALUES (600, 'after the skip')", dbname=DB)
        wait_for(lambda: "(600,\"after the skip\")" in table_rows(target, DB, "public", "accounts"), timeout=60,
                 interval=0.3, what="apply to resume after the skip")
        status = subprocess.run([PGTIDE, "status", *base, "--json"], capture_output=True, text=True, timeout=60)
        state = json.loads(status.stdout.splitlines()[0])
        assert state["state"] == "streaming" and state["target"]["enabled"], status.stdout

        report = verify_plan(plan, options=VerifyOptions(recheck_timeout=20))
        accounts = next(t for t in report.tables if t.name == "accounts")
        other = next(t for t in report.tables if t.name == "other")
        assert (accounts.missing, accounts.extra, accounts.different) == (2, 0, 1), accounts
        keys = sorted(str(d.describe(accounts.key_columns)) for d in accounts.differences)
        assert any("499" in k for k in keys) and any("501" in k for k in keys) and any("500" in k for k in keys), keys
        assert other.missing == 1 and not report.ok
    finally:
        target.clean_replication()
        source.clean_replication()
        source.drop_database(DB)
