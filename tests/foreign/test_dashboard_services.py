"""The app's foreign-dashboard services against real servers: what the screen shows comes
from the same record, worker and verify as the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pgharness import wait_for

from pgtide.core.infra.errors import InputError
from pgtide.core.infra.events import CancelToken
from pgtide.core.jobs.worker import lock_held
from pgtide.screens.services import CoreServices

PGTIDE = str(Path(sys.executable).parent / "pgtide")


def test_status_verify_start_and_stop(tmp_path: Path, target_cluster: Any, target_db: str) -> None:
    path = tmp_path / "dash.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
    conn.close()
    init = subprocess.run([PGTIDE, "init", "--source", str(path), "--target", target_cluster.url(target_db), "--yes",
                           "--json", "--refresh-every", "1s"], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    migration = json.loads(init.stdout.splitlines()[-1])["migration"]
    services = CoreServices()
    listed = next(m for m in services.list_migrations() if m["id"] == migration)
    assert listed["kind"] == "foreign" and listed["source"].startswith("sqlite://")
    status = services.foreign_status(migration)
    assert (status.state, status.mode) == ("copied", "copy") and status.tables["t"]["rows"] == 2
    target_cluster.execute("DELETE FROM t WHERE id = 2", dbname=target_db)
    seen: list[Any] = []
    report = services.foreign_verify(migration, seen.append, CancelToken())
    assert not report.ok and seen[0].missing == ["2"]
    try:
        assert services.foreign_start_sync(migration) == "refresh"
        with pytest.raises(InputError, match="already running"):
            services.foreign_start_sync(migration)
        wait_for(lambda: target_cluster.execute("SELECT count(*) FROM t", dbname=target_db) == [(2,)],
                 what="the refresh to put the deleted row back")
        assert services.foreign_status(migration).worker["state"] == "alive"
        assert services.foreign_verify(migration, lambda _v: None, CancelToken()).ok
    finally:
        services.foreign_stop(migration)
    assert not lock_held(migration)
