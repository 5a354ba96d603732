"""Migrations that outlive the terminal: the worker process, attach, stop, crash, secrets."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from engine_support import add_slow_table, replication_objects, wait_until_identical
from pgharness import PASSWORD_ROLE, PgCluster, wait_for
from psycopg import sql

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.jobs.store import JobStore
from pgtide.core.jobs.worker import EventLog, lock_held, worker_info
from pgtide.core.replication import naming

PGTIDE = str(Path(sys.executable).parent / "pgtide")
DB = "worker_shop"


@pytest.fixture
def shop(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    source_cluster.create_database(DB)
    source_cluster.execute("CREATE TABLE items (id int PRIMARY KEY, name text); "
                           "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g", dbname=DB)
    yield source_cluster, target_cluster
    for directory in [d for d in (Path(os.environ["PGTIDE_STATE_DIR"]) / "jobs").glob("*") if d.is_dir()]:
        _stop_worker(directory.name)
    for cluster in (target_cluster, source_cluster):
        cluster.clean_replication()
        cluster.drop_database(DB)


def _stop_worker(migration_id: str) -> None:
    info = worker_info(migration_id)
    if info.alive and info.pid:
        subprocess.run([PGTIDE, "stop", migration_id, "--timeout", "30"], capture_output=True, timeout=60)
        if lock_held(migration_id):
            os.kill(info.pid, signal.SIGKILL)


def _migration(source: PgCluster, target: PgCluster) -> str:
    return naming.migration_id(Endpoint.parse(source.url(DB), env={}), Endpoint.parse(target.url(DB), env={}))


def _init_args(source_url: str, target: PgCluster, *extra: str) -> list[str]:
    return [PGTIDE, "init", "--source", source_url, "--target", target.url(DB), "--yes", "--jobs", "1", *extra]


def _state(migration_id: str) -> str | None:
    return JobStore(migration_id).database(DB).get("status")


def test_a_detached_init_streams_and_the_worker_keeps_watching(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    done = subprocess.run(_init_args(source.url(DB), target, "--detach"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running in worker" in done.stderr and "copied public.items" in done.stdout
    migration = _migration(source, target)
    assert _state(migration) == "streaming"
    # The CLI is gone; the worker watches the replication and says so.
    info = worker_info(migration)
    assert info.alive and info.command == "init"
    listed = json.loads(subprocess.run([PGTIDE, "migrations", "--json"], capture_output=True, text=True,
                                       timeout=60).stdout.splitlines()[0])
    assert listed["worker"]["state"] == "alive"
    wait_for(lambda: any(r.get("event") == "LagSample" for r in EventLog(migration).read()), timeout=30,
             what="lag samples in the event log")
    source.execute("INSERT INTO items VALUES (501, 'after init')", dbname=DB)
    wait_until_identical(source, target, DB, {("public", "items"): None})
    stopped = subprocess.run([PGTIDE, "stop", migration], capture_output=True, text=True, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert not worker_info(migration).alive
    assert worker_info(migration).state == "finished (0)"
    assert _state(migration) == "streaming"  # stopping the watcher leaves replication running


def test_a_hangup_of_the_terminal_does_not_stop_the_copy(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    add_slow_table(source, DB, 1500)  # a copy that lasts a few seconds on the target
    cli = subprocess.Popen(_init_args(source.url(DB), target, "--detach"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
    migration = _migration(source, target)
    wait_for(lambda: worker_info(migration).alive and _state(migration) == "copying", timeout=60,
             what="the worker copying")
    os.killpg(cli.pid, signal.SIGHUP)  # the terminal went away: the CLI's whole process group
    cli.wait(timeout=30)
    assert cli.returncode != 0
    for stream in (cli.stdout, cli.stderr):
        assert stream is not None
        stream.close()
    wait_for(lambda: _state(migration) == "streaming", timeout=120, what="the worker to reach streaming")
    wait_until_identical(source, target, DB, {("public", "items"): None, ("public", "slow_rows"): None})


def test_kill_9_of_the_worker_shows_it_dead_and_a_rerun_completes(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    add_slow_table(source, DB, 3000)
    cli = subprocess.Popen(_init_args(source.url(DB), target, "--detach"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    migration = _migration(source, target)
    wait_for(lambda: worker_info(migration).alive and _state(migration) == "copying", timeout=60,
             what="the worker copying")
    pid = worker_info(migration).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not worker_info(migration).alive, timeout=30, what="the lock to be free")
    cli.wait(timeout=30)
    assert worker_info(migration).state == "dead"
    listed = subprocess.run([PGTIDE, "migrations"], capture_output=True, text=True, timeout=60).stdout
    assert "dead" in listed and "copying" in listed
    rerun = subprocess.run(_init_args(source.url(DB), target, "--foreground"), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _state(migration) == "streaming"
    wait_until_identical(source, target, DB, {("public", "items"): None, ("public", "slow_rows"): None})
    assert len(replication_objects(source, target)["slots"]) == 1


def test_stop_mid_copy_cancels_cleanly_and_a_rerun_continues(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    add_slow_table(source, DB, 3000)
    cli = subprocess.Popen(_init_args(source.url(DB), target, "--detach"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    migration = _migration(source, target)
    wait_for(lambda: worker_info(migration).alive and _state(migration) == "copying", timeout=60,
             what="the worker copying")
    stopped = subprocess.run([PGTIDE, "stop", migration], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    cli.wait(timeout=60)
    assert cli.returncode == 4  # the attached CLI reports the interruption
    assert worker_info(migration).state == "finished (4)"
    assert replication_objects(source, target)["slots"] == []  # the cancel undid the copy's slot
    rerun = subprocess.run(_init_args(source.url(DB), target, "--foreground"), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    wait_until_identical(source, target, DB, {("public", "items"): None, ("public", "slow_rows"): None})


def test_the_worker_holds_no_password_in_argv_environment_or_event_log(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    password = "w0rker:" + secrets.token_urlsafe(12)
    source.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER REPLICATION PASSWORD {}").format(
        sql.Identifier(PASSWORD_ROLE), sql.Literal(password)))
    try:
        url = f"postgresql://{PASSWORD_ROLE}:{quote(password, safe='')}@127.0.0.1:{source.port}/{DB}"
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        done = subprocess.run(_init_args(url, target, "--detach"), capture_output=True, text=True, timeout=180,
                              env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        migration = _migration(source, target)
        info = worker_info(migration)
        assert info.alive and info.pid
        # The worker authenticates with it (its monitor session is open), yet holds it nowhere visible.
        assert source.execute("SELECT 1 FROM pg_stat_activity WHERE usename = %s", [PASSWORD_ROLE])
        for name in ("cmdline", "environ"):
            assert password.encode() not in Path(f"/proc/{info.pid}/{name}").read_bytes(), name
        state = Path(os.environ["PGTIDE_STATE_DIR"])
        logs = Path(os.environ["PGTIDE_LOG_DIR"])
        leaked = [p for root in (state, logs) for p in root.rglob("*") if p.is_file()
                  and password.encode() in p.read_bytes()]
        assert leaked == []
    finally:
        _stop_worker(_migration(source, target))
        for cluster in (target, source):  # the publication belongs to the role
            cluster.clean_replication()
        # On both: init copies the source's roles to the target (without their passwords), and
        # the target's copied tables keep their owner.
        for cluster in (target, source):
            if cluster.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [PASSWORD_ROLE]):
                if cluster.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]):
                    cluster.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(PASSWORD_ROLE)), dbname=DB)
                cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(PASSWORD_ROLE)))


def test_the_event_log_rotates_and_keeps_one_generation(tmp_path: Path) -> None:
    log = EventLog("rotation-test", max_bytes=4096)
    for index in range(2000):
        log.append({"event": "LagSample", "database": "d", "lag_bytes": index, "lag_seconds": 0.1,
                    "state": "streaming"})
    kept = log.read()
    sizes = [p.stat().st_size for p in log.path.parent.glob("events*.jsonl")]
    assert len(sizes) == 2 and all(size <= 4096 for size in sizes)
    assert kept[-1]["lag_bytes"] == 1999 and [r["lag_bytes"] for r in kept] == sorted(r["lag_bytes"] for r in kept)


def test_the_worker_pauses_and_resumes_apply_and_verifies_on_request(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    done = subprocess.run(_init_args(source.url(DB), target, "--detach"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    migration = _migration(source, target)
    wait_for(lambda: any(r.get("event") == "LagSample" for r in EventLog(migration).read()), timeout=30,
             what="the worker watching")

    def control(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PGTIDE, "control", migration, action], capture_output=True, text=True, timeout=60)

    assert control("pause").returncode == 0
    assert target.execute("SELECT subenabled FROM pg_subscription") == [(False,)]
    source.execute("INSERT INTO items VALUES (900, 'while paused')", dbname=DB)
    time.sleep(1.0)
    assert target.execute("SELECT count(*) FROM items WHERE id = 900", dbname=DB) == [(0,)]
    assert control("resume").returncode == 0
    wait_until_identical(source, target, DB, {("public", "items"): None})
    assert control("verify").returncode == 0
    wait_for(lambda: any(r.get("event") == "VerifyFinished" and r.get("ok") for r in EventLog(migration).read()),
             timeout=60, what="the worker's verify")
    assert JobStore(migration).meta()["last_verify"]["ok"]


def test_a_reopened_app_gets_the_workers_lag_history_and_the_last_verify(shop: tuple[PgCluster, PgCluster]) -> None:
    from pgtide.core.model.plan import Options, Plan
    from pgtide.core.model.selection import Selection
    from pgtide.screens.services import CoreServices

    source, target = shop
    done = subprocess.run(_init_args(source.url(DB), target, "--detach"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    migration = _migration(source, target)
    wait_for(lambda: sum(r.get("event") == "LagSample" for r in EventLog(migration).read()) >= 2, timeout=30,
             what="lag samples")
    plan = Plan(Endpoint.parse(source.url(DB), env={}), Endpoint.parse(target.url(DB), env={}),
                Selection.from_cli(include_databases=DB), Options(jobs=1))
    lag, verify = CoreServices().recorded_history(plan)
    assert len(lag[DB]) >= 2 and verify is None
    assert subprocess.run([PGTIDE, "control", migration, "verify"], capture_output=True, timeout=60).returncode == 0
    wait_for(lambda: CoreServices().recorded_history(plan)[1] is not None, timeout=60, what="the recorded verify")
    assert CoreServices().recorded_history(plan)[1]["ok"]  # type: ignore[index]


def test_the_cutover_runs_in_the_worker_which_takes_over_from_the_watcher(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    done = subprocess.run(_init_args(source.url(DB), target, "--detach"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    migration = _migration(source, target)
    assert worker_info(migration).alive  # watching
    cut = subprocess.run([PGTIDE, "cutover", "--source", source.url(DB), "--target", target.url(DB), "--detach",
                          "--yes", "--force"], capture_output=True, text=True, timeout=240)
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert "cutting over in worker" in cut.stderr and "write downtime" in cut.stdout
    assert "fence" in cut.stdout and "switch" in cut.stdout  # the steps, as they happened in the worker
    assert _state(migration) == "cut_over" and not worker_info(migration).alive
    assert replication_objects(source, target) == {"slots": [], "publications": [], "subscriptions": []}
