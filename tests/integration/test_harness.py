"""The harness is fit for the engine's tests: real clusters, real logical replication."""

from __future__ import annotations

import psycopg
import pytest
from pgharness import HOSTILE_TABLES, PgCluster, create_fixture_schema, wait_for
from psycopg import sql


def _replicate_one_row(source: PgCluster, source_db: str, target: PgCluster, target_db: str, slot: str) -> None:
    """Publication first, then a slot with an exported snapshot, then a subscription on that slot."""
    ddl = "CREATE TABLE items (id int PRIMARY KEY, label text)"
    source.execute(ddl, dbname=source_db)
    target.execute(ddl, dbname=target_db)
    source.execute("CREATE PUBLICATION pub FOR TABLE items", dbname=source_db)
    with psycopg.connect(
        host="127.0.0.1", port=source.port, user="postgres", dbname=source_db,
        replication="database", autocommit=True, cursor_factory=psycopg.ClientCursor,
    ) as repl:
        row = repl.execute(f"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput").fetchone()
        assert row is not None and row[0] == slot
    target.execute(
        sql.SQL(
            "CREATE SUBSCRIPTION sub CONNECTION {} PUBLICATION pub "
            "WITH (create_slot = false, slot_name = {}, copy_data = false)"
        ).format(
            sql.Literal(f"host=127.0.0.1 port={source.port} user=postgres dbname={source_db}"), sql.Literal(slot)
        ),
        dbname=target_db,
    )
    source.execute("INSERT INTO items VALUES (1, 'über'), (2, NULL)", dbname=source_db)
    wait_for(
        lambda: target.execute("SELECT count(*) FROM items", dbname=target_db)[0][0] == 2,
        what="the rows to replicate",
    )
    assert target.execute("SELECT id, label FROM items ORDER BY id", dbname=target_db) == [(1, "über"), (2, None)]
    source.execute("UPDATE items SET label = 'changed' WHERE id = 2", dbname=source_db)
    wait_for(
        lambda: target.execute("SELECT label FROM items WHERE id = 2", dbname=target_db) == [("changed",)],
        what="the update to replicate",
    )


def test_row_replicates_from_source_to_target(
    source_cluster: PgCluster, source_db: str, target_cluster: PgCluster, target_db: str
) -> None:
    assert source_cluster.execute("SHOW wal_level")[0][0] == "logical"
    assert source_cluster.port != target_cluster.port
    _replicate_one_row(source_cluster, source_db, target_cluster, target_db, "harness_slot")


def test_fixture_cleanup_removed_previous_slots(source_cluster: PgCluster) -> None:
    # Runs after the test above (file order): its slot and publication must be gone.
    assert source_cluster.execute("SELECT slot_name FROM pg_replication_slots") == []


def test_hostile_fixture_schema(source_cluster: PgCluster, source_db: str) -> None:
    tables = create_fixture_schema(source_cluster, source_db, rows=10)
    for schema, table in HOSTILE_TABLES:
        count = source_cluster.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)), dbname=source_db
        )[0][0]
        assert count == 10, (schema, table)
    names = {row[0] for row in source_cluster.execute("SELECT relname FROM pg_class WHERE relkind = 'r'", dbname=source_db)}
    assert {table for _, table in tables} <= names
    assert max(len(name.encode()) for name in names) == 63


@pytest.mark.crossversion
@pytest.mark.parametrize(("source_major", "target_major"), [(15, 16), (16, 18)])
def test_cross_version_replication(cluster_factory, source_major: int, target_major: int) -> None:  # type: ignore[no-untyped-def]
    source = cluster_factory(major=source_major)
    target = cluster_factory(major=target_major)
    assert source.major == source_major and target.major == target_major
    source_db = source.create_database("xv")
    target_db = target.create_database("xv")
    _replicate_one_row(source, source_db, target, target_db, "xv_slot")
    target.clean_replication()
    source.clean_replication()
