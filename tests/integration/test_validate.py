"""Every validate check, made to fail on a real cluster, with its remedy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pgharness import PgCluster, create_fixture_schema, free_port

from pgtide.core.engine.validate import Check, Report, validate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection


def _validate(source: str, target: str, **flags: object) -> Report:
    return validate(Plan(Endpoint.parse(source, env={}), Endpoint.parse(target, env={}),
                         Selection.from_cli(**flags)))  # type: ignore[arg-type]


def _check(report: Report, name: str) -> Check:
    matches = [c for c in report.checks if c.name == name]
    assert matches, f"no check {name!r} in {[c.name for c in report.checks]}"
    return matches[0]


def _failed(report: Report, name: str, remedy_part: str) -> Check:
    check = _check(report, name)
    assert check.status == "error", check
    assert remedy_part in check.remedy, check.remedy
    assert not report.ok
    return check


def test_all_green(source_cluster: PgCluster, source_db: str, target_cluster: PgCluster) -> None:
    create_fixture_schema(source_cluster, source_db, rows=5)
    source_cluster.execute("ALTER TABLE events_no_pk REPLICA IDENTITY FULL", dbname=source_db)
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url())
    assert report.ok, [c for c in report.checks if c.status == "error"]
    assert _check(report, "sequences").status == "warning"
    assert report.scope is not None and report.scope.databases[0].name == source_db


def test_unreachable_servers(source_cluster: PgCluster) -> None:
    report = _validate(f"postgresql://u@127.0.0.1:{free_port()}/x", source_cluster.url())
    _failed(report, "source reachable", "server is running")
    report = _validate(source_cluster.url(), f"postgresql://u@127.0.0.1:{free_port()}/x")
    _failed(report, "target reachable", "server is running")


def test_wal_level_and_slot_capacity(cluster_factory: Callable[..., PgCluster], target_cluster: PgCluster) -> None:
    replica = cluster_factory(wal_level="replica")
    report = _validate(replica.url(), target_cluster.url())
    check = _failed(report, "source wal_level", "wal_level = logical")
    assert "'replica'" in check.observed

    full = cluster_factory(max_replication_slots="1", max_wal_senders="0")
    full.execute("SELECT pg_create_logical_replication_slot('someone_elses', 'pgoutput')")
    report = _validate(full.url(), target_cluster.url())
    _failed(report, "source max_replication_slots", "drop unused replication slots")
    _failed(report, "source max_wal_senders", "Raise max_wal_senders")


def test_target_worker_capacity(cluster_factory: Callable[..., PgCluster], source_cluster: PgCluster) -> None:
    target = cluster_factory(max_logical_replication_workers="0", max_worker_processes="1")
    report = _validate(source_cluster.url(), target.url())
    _failed(report, "target max_logical_replication_workers", "Raise max_logical_replication_workers")
    _failed(report, "target max_worker_processes", "Raise max_worker_processes")


def test_roles_without_the_needed_privileges(source_cluster: PgCluster, target_cluster: PgCluster) -> None:
    source_cluster.execute("CREATE ROLE no_replication LOGIN")
    target_cluster.execute("CREATE ROLE plain_user LOGIN")
    try:
        report = _validate(source_cluster.url(user="no_replication"), target_cluster.url(user="plain_user"))
        _failed(report, "source role can replicate", "WITH REPLICATION")
        _failed(report, "target role can create databases", "CREATEDB")
        _failed(report, "target role can create subscriptions", "superuser")
    finally:
        source_cluster.execute("DROP ROLE no_replication")
        target_cluster.execute("DROP ROLE plain_user")


def test_same_server_is_refused(source_cluster: PgCluster, source_db: str) -> None:
    report = _validate(source_cluster.url(dbname=source_db), source_cluster.url(dbname=source_db))
    _failed(report, "source and target differ", "another server")


def test_table_without_primary_key_gets_the_exact_statement(source_cluster: PgCluster, source_db: str,
                                                            target_cluster: PgCluster) -> None:
    create_fixture_schema(source_cluster, source_db, rows=5)
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url())
    _failed(report, "tables have a primary key or replica identity",
            'ALTER TABLE "public"."events_no_pk" REPLICA IDENTITY FULL')
    # Excluding it (or making it schema-only) is the other way out.
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url(), schema_only_tables=["events_no_pk"])
    assert _check(report, "tables have a primary key or replica identity").status == "ok"


def test_selection_errors_are_a_failed_check(source_cluster: PgCluster, source_db: str,
                                             target_cluster: PgCluster) -> None:
    create_fixture_schema(source_cluster, source_db, rows=5)
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url(),
                       table_filters=["customers:nmae = 'x'"])
    _failed(report, "selection", "Did you mean name")


def test_warnings_for_what_does_not_replicate(source_cluster: PgCluster, source_db: str,
                                              target_cluster: PgCluster) -> None:
    source_cluster.execute(
        """
        CREATE TABLE t (id int PRIMARY KEY);
        CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
        CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
        SELECT lo_from_bytea(0, 'x');
        """,
        dbname=source_db,
    )
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url())
    for name, remedy in (("unlogged tables", "cannot be replicated"), ("large objects", "not replicated"),
                         ("objects without replication", "REFRESH MATERIALIZED VIEW")):
        check = _check(report, name)
        assert check.status == "warning" and remedy in check.remedy, check
    assert report.ok


@pytest.mark.crossversion
def test_versions_tools_and_extensions(cluster_factory: Callable[..., PgCluster], source_cluster: PgCluster,
                                       source_db: str, target_cluster: PgCluster) -> None:
    pg16 = cluster_factory(major=16)
    # A newer source than target: logical replication cannot go downhill.
    report = _validate(pg16.url(), target_cluster.url())
    _failed(report, "target version", "same major version or newer")
    # The machine's pg_dump (15) cannot read a PostgreSQL 18 server.
    pg18 = cluster_factory(major=18)
    report = _validate(pg18.url(), pg16.url())
    check = _failed(report, "pg_dump available", "postgresql-client-18")
    assert "older than the PostgreSQL 18 server" in check.observed
    # hstore exists in the machine's PostgreSQL 15, not in the bundled 16.
    source_cluster.execute("CREATE EXTENSION hstore", dbname=source_db)
    report = _validate(source_cluster.url(dbname=source_db), pg16.url())
    check = _failed(report, "extensions available on target", "Install those extensions")
    assert "hstore" in check.observed


def test_validate_changes_nothing(source_cluster: PgCluster, source_db: str, target_cluster: PgCluster) -> None:
    create_fixture_schema(source_cluster, source_db, rows=5)
    before = (source_cluster.execute("SELECT count(*) FROM pg_replication_slots"),
              target_cluster.execute("SELECT count(*) FROM pg_database"))
    _validate(source_cluster.url(dbname=source_db), target_cluster.url(),
              table_filters=["customers:id < 3"], schema_only_tables=["orders"])
    assert source_cluster.execute("SELECT pubname FROM pg_publication", dbname=source_db) == []
    assert (source_cluster.execute("SELECT count(*) FROM pg_replication_slots"),
            target_cluster.execute("SELECT count(*) FROM pg_database")) == before


def test_non_empty_target_database_needs_drop_existing(source_cluster: PgCluster, source_db: str,
                                                       target_cluster: PgCluster) -> None:
    source_cluster.execute("CREATE TABLE t (id int PRIMARY KEY)", dbname=source_db)
    target_cluster.create_database(source_db)
    try:
        target_cluster.execute("CREATE TABLE leftover (x int)", dbname=source_db)
        source, target = source_cluster.url(dbname=source_db), target_cluster.url()
        check = _failed(_validate(source, target), "target database", "--drop-existing")
        assert "table public.leftover" in check.observed
        report = validate(Plan(Endpoint.parse(source, env={}), Endpoint.parse(target, env={}),
                               options=Options(drop_existing=True)))
        assert _check(report, "target database").status == "warning" and report.ok
    finally:
        target_cluster.drop_database(source_db)
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url())
    assert _check(report, "target database").observed == "will be created"


def test_schema_only_and_row_filter_on_one_table_is_a_warning_naming_both(
    source_cluster: PgCluster, source_db: str, target_cluster: PgCluster
) -> None:
    create_fixture_schema(source_cluster, source_db, rows=5)
    report = _validate(source_cluster.url(dbname=source_db), target_cluster.url(),
                       schema_only_tables=["orders"], table_filters=["orders:id < 3"])
    warnings = [c for c in report.checks if c.name == "selection" and c.status == "warning"]
    assert len(warnings) == 1, report.checks
    # Schema-only wins (the seed tools' precedence), and the user is told which rule lost.
    assert "row filter 'id < 3'" in warnings[0].observed and "schema-only" in warnings[0].observed
    assert "--schema-only-tables" in warnings[0].observed and "--table-filter" in warnings[0].observed
    assert "Remove the rule" in warnings[0].remedy
