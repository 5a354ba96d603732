"""A foreign source's sync in the migration's worker: it outlives the command, stop ends it,
kill -9 leaves nothing a rerun cannot continue from, and no password reaches argv, the
environment or the event log."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mariadb_harness import mariadb_db, mariadb_server  # noqa: F401
from pgharness import wait_for

from pgtide.core.jobs.worker import EventLog, lock_held, worker_info

PGTIDE = str(Path(sys.executable).parent / "pgtide")


def _run(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PGTIDE, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def test_refresh_sync_runs_detached_and_stops(tmp_path: Path, target_cluster: Any, target_db: str) -> None:
    path = tmp_path / "live.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');")
    conn.close()
    init = _run("init", "--source", str(path), "--target", target_cluster.url(target_db), "--yes", "--json")
    assert init.returncode == 0, init.stderr
    migration = json.loads(init.stdout.splitlines()[-1])["migration"]
    sync = _run("sync", "--migration", migration, "--detach", "--refresh-every", "1s")
    assert sync.returncode == 0, sync.stderr
    assert worker_info(migration).alive
    conn = sqlite3.connect(path)
    conn.executescript("INSERT INTO t VALUES (2, 'b'); UPDATE t SET v = 'A' WHERE id = 1;")
    conn.close()
    wait_for(lambda: target_cluster.execute("SELECT id, v FROM t ORDER BY id", dbname=target_db) == [(1, "A"), (2, "b")],
             what="the refresh to apply the source's changes")
    status = _run("status", "--migration", migration, "--json")
    data = json.loads(status.stdout.splitlines()[-1])
    assert status.returncode == 0 and data["worker"]["state"] == "alive" and data["mode"] == "refresh"
    # Refreshes go on every second: the last one found nothing new, and ran moments ago.
    assert data["last_refresh"] is not None and time.time() - data["last_refresh"]["at"] < 10
    stopped = _run("stop", migration, "--timeout", "30")
    assert stopped.returncode == 0, stopped.stderr
    assert not lock_held(migration)


def test_binlog_sync_survives_kill_9_and_resumes(mariadb_server: Any, mariadb_db: str, target_cluster: Any,
                                                 target_db: str) -> None:
    mariadb_server.execute("CREATE TABLE acct (id INT PRIMARY KEY, n INT)", db=mariadb_db)
    mariadb_server.execute("INSERT INTO acct VALUES (1, 1), (2, 2)", db=mariadb_db)
    env = {**os.environ, "PGTIDE_SOURCE_PASSWORD": mariadb_server.password}
    source = mariadb_server.url(mariadb_db)
    init = _run("init", "--source", source, "--target", target_cluster.url(target_db), "--yes", "--json", env=env)
    assert init.returncode == 0, init.stderr
    migration = json.loads(init.stdout.splitlines()[-1])["migration"]
    assert _run("sync", "--migration", migration, "--detach", env=env).returncode == 0
    info = worker_info(migration)
    assert info.alive and info.pid
    mariadb_server.execute("INSERT INTO acct VALUES (3, 3)", db=mariadb_db)
    wait_for(lambda: target_cluster.execute("SELECT count(*) FROM acct", dbname=target_db) == [(3,)],
             what="the binlog insert on the target")
    # The password reached the worker through its pipe only.
    with open(f"/proc/{info.pid}/cmdline", "rb") as handle:
        assert mariadb_server.password.encode() not in handle.read()
    with open(f"/proc/{info.pid}/environ", "rb") as handle:
        assert mariadb_server.password.encode() not in handle.read()
    assert mariadb_server.password not in EventLog(migration).path.read_text()
    os.kill(info.pid, signal.SIGKILL)
    wait_for(lambda: not lock_held(migration), what="the killed worker's lock to go")
    mariadb_server.execute("UPDATE acct SET n = 30 WHERE id = 3", db=mariadb_db)
    mariadb_server.execute("DELETE FROM acct WHERE id = 1", db=mariadb_db)
    assert _run("sync", "--migration", migration, "--detach", env=env).returncode == 0
    wait_for(lambda: target_cluster.execute("SELECT id, n FROM acct ORDER BY id", dbname=target_db) == [(2, 2), (3, 30)],
             what="the resumed stream to apply what happened while no worker ran")
    verify = _run("verify", "--migration", migration, env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert _run("teardown", "--migration", migration, "--yes", env=env).returncode == 0
    wait_for(lambda: not lock_held(migration), what="teardown to stop the worker")
    assert target_cluster.execute("SELECT to_regclass('pgtide.foreign_position')", dbname=target_db) == [(None,)]
    assert time.time()  # the target keeps its rows after teardown
    assert target_cluster.execute("SELECT count(*) FROM acct", dbname=target_db) == [(2,)]
