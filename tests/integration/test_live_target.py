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
from engine_support import replication_objects, wait_until_identical
from pgharness import PgCluster
from psycopg import sql

from pgtide.core.engine import migrate
from pgtide.core.engine.migrate import MigrationFailed
from pgtide.core.engine.validate import validate
from pgtide.core.infra.db import connection_pools
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError
from pgtide.core.jobs.store import JobStore
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.replication import naming

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


def _foreign_subscription(source: PgCluster, target: PgCluster) -> str:
    """Someone else's replication into the same target database (not pgtide's)."""
    source.execute("CREATE PUBLICATION theirs FOR TABLE notes", dbname=DB)
    source.execute("SELECT pg_create_logical_replication_slot('theirs', 'pgoutput')", dbname=DB)
    target.execute(f"CREATE SUBSCRIPTION theirs CONNECTION 'host=127.0.0.1 port={source.port} dbname={DB} "
                   "user=postgres' PUBLICATION theirs WITH (create_slot = false, slot_name = 'theirs', "
                   "copy_data = false)", dbname=DB)
    return "theirs"


def test_any_spelling_finds_the_same_live_migration(streaming: tuple[PgCluster, PgCluster], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = streaming
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[src]\nhost=localhost\nport={source.port}\ndbname={DB}\nuser=postgres\n"
                        f"[dst]\nhost=127.0.0.1\nport={target.port}\ndbname={DB}\nuser=postgres\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    first = _plan(source, target)
    by_service = Plan(Endpoint.parse("service=src"), Endpoint.parse("service=dst"), first.selection, first.options)
    for spelled in (_plan(source, target, host="localhost"), by_service):
        assert naming.migration_id(spelled.source, spelled.target) == naming.migration_id(first.source, first.target)
        check = next(c for c in validate(spelled).checks if c.name == "target database")
        assert check.status == "ok" and "already streaming" in check.observed, check
    for source_text, target_text in ((_url(source, "localhost"), _url(target, "localhost")),
                                     ("service=src", "service=dst")):
        status = subprocess.run([PGTIDE, "status", "--source", source_text, "--target", target_text, "--json"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and f'"database": "{DB}"' in status.stdout, status.stdout + status.stderr
    # Torn down from the service spelling: the one slot goes, nothing is left.
    assert len(replication_objects(source, target)["slots"]) == 1
    assert len(migrate.teardown(by_service)) == 3
    assert replication_objects(source, target) == {"slots": [], "publications": [], "subscriptions": []}


def test_validate_never_advises_dropping_a_target_someone_replicates_into(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    theirs = _foreign_subscription(source, target)
    check = next(c for c in validate(_plan(source, target)).checks if c.name == "target database")
    assert check.status == "error" and theirs in check.observed and "(a live migration)" in check.observed, check
    assert "Pass --drop-existing" not in check.remedy and "teardown" in check.remedy


def test_drop_existing_refuses_a_live_replica_and_changes_nothing(streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    _foreign_subscription(source, target)
    before = replication_objects(source, target)
    with pytest.raises(InputError) as info:
        migrate.init(_plan(source, target, drop_existing=True))
    assert "refusing to drop it" in info.value.cause and "(a live migration)" in info.value.cause
    assert replication_objects(source, target) == before
    source.execute("INSERT INTO orders VALUES (5, 'x') ON CONFLICT (id) DO UPDATE SET item = 'changed'", dbname=DB)
    wait_until_identical(source, target, DB, {("public", "orders"): "id <= 30"})


def test_teardown_with_the_target_database_refusing_connections_reports_and_keeps_the_record(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    plan = _plan(source, target)
    names = naming.replication_names(plan.source, plan.target, DB)
    target.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(DB)))
    # A new command (new connection pools): nothing already connected to that database.
    with connection_pools(), pytest.raises(MigrationFailed) as info:
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
