"""A live migration is recognised from every command: nothing advises or performs dropping it.

Also: teardown reports what it could not reach, status follows the source URL's database,
and a closed output pipe ends a command quietly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from engine_support import replication_objects, wait_until_identical
from pgharness import PgCluster
from pgtide.core.engine import migrate
from pgtide.core.replication import naming
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError
from pgtide.core.engine.migrate import MigrationFailed
from pgtide.core.jobs.store import JobStore
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.engine.validate import validate

PGTIDE = str(Path(sys.executable).parent / "pgtide")
DB = "live_shop"


def _url(cluster: PgCluster, host: str = "127.0.0.1") -> str:
    return f"postgresql://postgres@{host}:{cluster.port}/{DB}"


def _plan(source: PgCluster, target: PgCluster, host: str = "127.0.0.1", **options: object) -> Plan:
    return Plan(Endpoint.parse(_url(source, host), env={}), Endpoint.parse(_url(target, host), env={}),
                Selection.from_cli(schema_only_tables=["notes"], table_filters=["orders:id <= 30"]),
                Options(jobs=1, **options))  # type: ignore[arg-type]


@pytest.fixture
def streaming(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    source_cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    source_cluster.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, item text); "
        "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 50) g; "
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'not copied');",
        dbname=DB)
    results = migrate.init(_plan(source_cluster, target_cluster))
    assert [r.status for r in results] == ["streaming"]
    yield source_cluster, target_cluster
    target_cluster.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(DB)))
    target_cluster.clean_replication()
    target_cluster.drop_database(DB)
    source_cluster.clean_replication()
    source_cluster.drop_database(DB)


def test_status_with_urls_naming_the_database_shows_only_that_database(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    result = subprocess.run([PGTIDE, "status", "--source", _url(source), "--target", _url(target), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    databases = {json.loads(line).get("database") for line in result.stdout.splitlines() if '"database"' in line}
    assert databases == {DB}, result.stdout


def test_validate_from_another_spelling_never_advises_dropping_a_live_target(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    report = validate(_plan(source, target, host="localhost"))
    check = next(c for c in report.checks if c.name == "target database")
    assert check.status == "error" and "written to by subscription" in check.observed, check
    assert "Pass --drop-existing" not in check.remedy and "teardown" in check.remedy
    # The same spelling that started it: init leaves the streaming database as it is.
    same = next(c for c in validate(_plan(source, target)).checks if c.name == "target database")
    assert same.status == "ok" and "already streaming" in same.observed


def test_drop_existing_refuses_a_live_replica_and_changes_nothing(streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    before = replication_objects(source, target)
    # Another spelling of the same servers: a different migration as far as the job store
    # knows, but the server says a subscription writes to that database.
    with pytest.raises(InputError) as info:
        migrate.init(_plan(source, target, host="localhost", drop_existing=True))
    assert "refusing to drop it" in info.value.cause and "(a live migration)" in info.value.cause
    # The spelling that started it: already streaming, nothing is dropped.
    assert [r.status for r in migrate.init(_plan(source, target, drop_existing=True))] == ["streaming"]
    assert replication_objects(source, target) == before
    source.execute("INSERT INTO orders VALUES (5, 'x') ON CONFLICT (id) DO UPDATE SET item = 'changed'", dbname=DB)
    wait_until_identical(source, target, DB, {("public", "orders"): "id <= 30"})


def test_teardown_with_the_target_database_refusing_connections_reports_and_keeps_the_record(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    plan = _plan(source, target)
    names = naming.replication_names(plan.source, plan.target, DB)
    target.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(DB)))
    with pytest.raises(MigrationFailed) as info:
        migrate.teardown(plan)
    assert names.subscription in info.value.cause and "could not remove" in info.value.cause
    assert "the slot is gone" in info.value.remedy  # this run did drop the slot
    assert JobStore(naming.migration_id(plan.source, plan.target)).database(DB)["status"] == "streaming"
    assert replication_objects(source, target)["subscriptions"] == [names.subscription]
    target.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(DB)))
    assert f"subscription {names.subscription} on the target" in migrate.teardown(plan)
    assert replication_objects(source, target) == {"slots": [], "publications": [], "subscriptions": []}


def test_a_closed_output_pipe_ends_quietly_with_141(source_cluster: PgCluster, target_cluster: PgCluster) -> None:
    with subprocess.Popen([PGTIDE, "validate", "--json", "--source", source_cluster.url(),
                           "--target", target_cluster.url()],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())
        proc.stdout.close()
        assert proc.wait(timeout=120) == 141
        stderr = proc.stderr.read()
    assert "Traceback" not in stderr and "internal error" not in stderr and "Broken pipe" not in stderr
