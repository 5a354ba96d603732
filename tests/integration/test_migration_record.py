"""A migration is recorded and every command acts on it: from any front end, after any stop.

- cancel from the CLI (SIGINT) and from the app (the Cancel button) undo the same, and a
  rerun after either streams with every table identical;
- ``pgtide migrations`` lists migrations started by the CLI and by the app;
- teardown with the target stopped exits non-zero naming what it could not drop, keeps the
  record, and a later teardown with the target up finishes;
- README's URL flow on a migration with schema-only and filtered tables: status, verify and
  validate all exit 0, with no false difference and no advice to drop anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import add_slow_table, replication_objects, wait_until_identical
from pgharness import PgCluster
from psycopg import sql

from pgtide.app.tui import PgtideApp
from pgtide.core.catalog.scope import build_scope
from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.jobs.store import JobStore
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.replication import identity, naming
from pgtide.screens.run import RunScreen

PGTIDE = str(Path(sys.executable).parent / "pgtide")
DB = "rec_shop"
TABLES = {("public", "orders"): None, ("public", "slow_rows"): None, ("public", "items"): "id <= 100"}


def _populate(cluster: PgCluster) -> None:
    cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    cluster.execute(
        """
        CREATE TABLE orders (id int PRIMARY KEY, item text);
        INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 300) g;
        CREATE TABLE items (id int PRIMARY KEY, name text);
        INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 400) g;
        CREATE TABLE notes (id int PRIMARY KEY, body text);
        INSERT INTO notes VALUES (1, 'schema only');
        """,
        dbname=DB,
    )
    add_slow_table(cluster, DB, 2500, seconds_per_row=0.002)


@pytest.fixture
def shop(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    _populate(source_cluster)
    yield source_cluster, target_cluster
    for cluster in (target_cluster, source_cluster):
        cluster.clean_replication()
        cluster.drop_database(DB)


def _url(cluster: PgCluster) -> str:
    return cluster.url(dbname=DB)


FLAGS = ["--schema-only-tables", "notes", "--table-filter", "items:id <= 100"]


def _plan(source: PgCluster, target: PgCluster) -> Plan:
    return Plan(Endpoint.parse(_url(source), env={}), Endpoint.parse(_url(target), env={}),
                Selection.from_cli(schema_only_tables=["notes"], table_filters=["items:id <= 100"]),
                Options(jobs=2))


def _migrations() -> list[dict[str, Any]]:
    out = subprocess.run([PGTIDE, "migrations", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def _assert_streams_identical(source: PgCluster, target: PgCluster) -> None:
    source.execute("INSERT INTO orders VALUES (9001, 'after the rerun')", dbname=DB)
    wait_until_identical(source, target, DB, TABLES)
    assert target.execute("SELECT count(*) FROM notes", dbname=DB) == [(0,)]


def test_sigint_in_the_cli_then_a_rerun_streams(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    args = [PGTIDE, "init", "--yes", "--json", "--source", _url(source), "--target", _url(target), *FLAGS]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("phase") == "data":
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr
    assert replication_objects(source, target) == {"slots": [], "publications": [], "subscriptions": []}
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    _assert_streams_identical(source, target)
    (entry,) = _migrations()
    assert entry["databases"] == {DB: "streaming"} and entry["recorded_by"] == "pgtide"


async def _settle(pilot: Any) -> None:
    for _ in range(2):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def _wait(pilot: Any, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def test_cancel_in_the_app_then_a_rerun_streams_and_both_are_listed(
        shop: tuple[PgCluster, PgCluster], target_cluster: PgCluster) -> None:
    source, target = shop
    plan = _plan(source, target)
    scope = build_scope(plan.source, plan.selection)
    app = PgtideApp(cursor_blink=False)
    async with app.run_test(size=(120, 34)) as pilot:
        await _settle(pilot)
        app.start_migration(plan, scope)
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        await _wait(pilot, lambda: app.migration is not None and "data" in app.migration.phase_started,
                    "the data phase")
        await pilot.click("#cancel")
        await pilot.pause()
        await pilot.click("#confirm-yes")
        await _wait(pilot, lambda: app.migration is not None and app.migration.finished, "the cancel")
        assert app.migration is not None and app.migration.state == "cancelled"
        await pilot.press("ctrl+q")
    assert replication_objects(source, target) == {"slots": [], "publications": [], "subscriptions": []}
    # The rerun continues: nothing says "not empty".
    results = migrate.init(plan)
    assert [r.status for r in results] == ["streaming"]
    _assert_streams_identical(source, target)

    # A second migration, from the CLI, into another database of the same target.
    source.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB + "_cli")))
    source.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)", dbname=DB + "_cli")
    other = subprocess.run([PGTIDE, "init", "--yes", "--source", source.url(dbname=DB + "_cli"), "--target",
                            target.url(dbname=DB + "_cli")], capture_output=True, text=True, timeout=240)
    try:
        assert other.returncode == 0, other.stderr
        listed = _migrations()
        (entry,) = listed  # one pair of servers: one migration, two databases
        assert entry["databases"] == {DB: "streaming", DB + "_cli": "streaming"}
        assert entry["source"].startswith("postgresql://postgres@127.0.0.1") and "***" not in entry["source"]
    finally:
        for cluster in (target, source):
            cluster.clean_replication()
            cluster.drop_database(DB + "_cli")


def test_teardown_with_the_target_stopped_reports_and_a_later_one_finishes(
        source_cluster: PgCluster, cluster_factory: Callable[..., PgCluster]) -> None:
    _populate(source_cluster)
    target = cluster_factory()
    try:
        plan = _plan(source_cluster, target)
        assert [r.status for r in migrate.init(plan)] == ["streaming"]
        names = naming.replication_names(plan.source, plan.target, DB)
        target.stop()
        identity.forget_resolved()  # a new command: it must find the migration without the target
        down = subprocess.run([PGTIDE, "teardown", "--yes", "--source", _url(source_cluster), "--target",
                               _url(target)], capture_output=True, text=True, timeout=120)
        assert down.returncode == 1, down.stderr
        assert names.subscription in down.stderr and "could not remove" in down.stderr
        assert "the slot is gone" in down.stderr  # the slot on the reachable source was dropped
        assert source_cluster.execute("SELECT slot_name FROM pg_replication_slots") == []
        record = JobStore(naming.migration_id(plan.source, plan.target))
        assert record.database(DB)["status"] == "streaming"  # kept until the teardown is complete
        target.start()
        up = subprocess.run([PGTIDE, "teardown", "--yes", "--source", _url(source_cluster), "--target",
                             _url(target)], capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        assert target.execute("SELECT subname FROM pg_subscription") == []
        assert JobStore(record.migration_id).database(DB)["status"] == "torn_down"
    finally:
        source_cluster.clean_replication()
        source_cluster.drop_database(DB)


def test_the_readme_url_flow_on_a_filtered_migration(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    source.execute("SET pgtide_test.fast = 'on'; TRUNCATE slow_rows", dbname=DB)
    init = subprocess.run([PGTIDE, "init", "--yes", "--source", _url(source), "--target", _url(target), *FLAGS],
                          capture_output=True, text=True, timeout=240)
    assert init.returncode == 0, init.stderr
    wait_until_identical(source, target, DB, TABLES)
    urls = ["--source", _url(source), "--target", _url(target)]
    status = subprocess.run([PGTIDE, "status", *urls], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "postgres " not in status.stdout and DB in status.stdout
    verify = subprocess.run([PGTIDE, "verify", *urls, "--json"], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "using the selection recorded" in verify.stderr
    summary = json.loads(verify.stdout.splitlines()[-1])["summary"]
    assert summary["missing"] == 0 and summary["extra"] == 0 and summary["different"] == 0
    validate = subprocess.run([PGTIDE, "validate", *urls, *FLAGS], capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "drop-existing" not in validate.stdout
    (entry,) = _migrations()
    assert entry["last_verify"]["ok"] is True


def test_a_record_of_pgtide_0_1_is_found_under_its_spelling_and_listed(shop: tuple[PgCluster, PgCluster]) -> None:
    source, target = shop
    plan = _plan(source, target)
    legacy = identity.spelling_id(plan.source, plan.target)
    path = JobStore(legacy).path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"migration_id": legacy, "databases": {DB: {"status": "torn_down"}}}))
    assert naming.migration_id(plan.source, plan.target) == legacy
    (entry,) = _migrations()
    assert entry["id"] == legacy and entry["recorded_by"].startswith("pgtide 0.1")
    assert os.path.exists(path)


def test_the_app_validates_an_unreachable_target_as_a_failed_check(source_cluster: PgCluster) -> None:
    from pgtide.core.infra.localcluster import free_port
    from pgtide.screens.services import CoreServices

    plan = Plan(Endpoint.parse(source_cluster.url(), env={}),
                Endpoint.parse(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", env={}))
    report = CoreServices().validate(plan, lambda event: None)  # no exception: a check says it
    target = next(c for c in report.checks if c.name == "target reachable")
    assert target.status == "error" and not report.ok


async def test_quit_mid_copy_leaving_it_running_reaches_streaming(shop: tuple[PgCluster, PgCluster]) -> None:
    from pgtide.core.jobs.worker import worker_info
    from pgtide.core.replication import naming

    source, target = shop
    plan = _plan(source, target)
    scope = build_scope(plan.source, plan.selection)
    app = PgtideApp(cursor_blink=False)
    async with app.run_test(size=(120, 34)) as pilot:
        await _settle(pilot)
        app.start_migration(plan, scope)
        await _wait(pilot, lambda: app.migration is not None and "data" in app.migration.phase_started,
                    "the data phase")
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#choice-leave")  # the default: the migration outlives the app
        await _wait(pilot, lambda: not app.is_running, "the app to quit")
    migration = naming.migration_id(plan.source, plan.target)
    assert worker_info(migration).alive  # still copying, without the app
    deadline = time.monotonic() + 120
    while JobStore(migration).database(DB).get("status") != "streaming" and time.monotonic() < deadline:
        time.sleep(0.5)
    _assert_streams_identical(source, target)
    listed = subprocess.run([PGTIDE, "stop", migration], capture_output=True, text=True, timeout=90)
    assert listed.returncode == 0, listed.stderr
