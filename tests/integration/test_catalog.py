"""Catalog discovery against a real server, hostile names included."""

from __future__ import annotations

from pgharness import HOSTILE_TABLES, PgCluster, create_fixture_schema

from pgtide.core.catalog.discovery import discover_database, list_databases
from pgtide.core.infra.endpoint import Endpoint


def _extras(cluster: PgCluster, db: str) -> None:
    with cluster.connect(db) as conn:
        conn.execute(
            """
            CREATE TABLE measurements (id bigint, at timestamptz NOT NULL, day date, v float8,
                                       PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
            CREATE TABLE measurements_2025 PARTITION OF measurements
                FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            CREATE TABLE measurements_2026 PARTITION OF measurements
                FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            INSERT INTO measurements SELECT g, '2025-06-01'::timestamptz + g * interval '1 day', NULL, g
                FROM generate_series(1, 400) g;
            CREATE VIEW order_totals AS SELECT customer_id, sum(amount) FROM orders GROUP BY 1;
            CREATE MATERIALIZED VIEW region_counts AS SELECT region, count(*) FROM customers GROUP BY 1;
            CREATE UNLOGGED TABLE scratch (k text PRIMARY KEY);
            CREATE TABLE keyed_by_index (a int NOT NULL, b int);
            CREATE UNIQUE INDEX keyed_by_index_a ON keyed_by_index (a);
            ALTER TABLE keyed_by_index REPLICA IDENTITY USING INDEX keyed_by_index_a;
            CREATE TABLE full_identity (a int, b text);
            ALTER TABLE full_identity REPLICA IDENTITY FULL;
            CREATE SEQUENCE free_standing;
            ANALYZE;
            """
        )
        conn.execute("SELECT lo_from_bytea(0, 'blob one'), lo_from_bytea(0, 'blob two')")


def test_discovers_everything_in_one_database(source_cluster: PgCluster, source_db: str) -> None:
    create_fixture_schema(source_cluster, source_db, rows=20)
    _extras(source_cluster, source_db)
    catalog = discover_database(Endpoint.parse(source_cluster.url(dbname=source_db), env={}))

    assert catalog.database == source_db and catalog.server_version_num // 10000 == 15
    assert {"public", "My Schema"} <= set(catalog.schemas)
    for schema, table in HOSTILE_TABLES:
        info = catalog.table(schema, table)
        assert info is not None, (schema, table)
        assert info.primary_key == ("id",) and info.has_usable_identity
        assert [column.name for column in info.columns] == ["id", "Value Col", "note"]
        assert info.total_bytes > 0

    no_pk = catalog.table("public", "events_no_pk")
    assert no_pk is not None and no_pk.primary_key == () and not no_pk.has_usable_identity
    assert [c.name for c in no_pk.time_columns] == ["at"]

    orders = catalog.table("public", "orders")
    assert orders is not None and orders.row_estimate == 40
    assert [(c.name, c.type) for c in orders.time_columns] == [("created_at", "timestamp with time zone")]

    parent = catalog.table("public", "measurements")
    child = catalog.table("public", "measurements_2025")
    assert parent is not None and child is not None
    assert parent.is_partitioned and parent.primary_key == ("id", "at")
    assert child.partition_parent == ("public", "measurements") and not child.is_partitioned
    assert parent.total_bytes >= child.total_bytes > 0
    assert [c.name for c in parent.time_columns] == ["at", "day"]

    by_index = catalog.table("public", "keyed_by_index")
    assert by_index is not None and by_index.replica_identity == "i" and by_index.identity_columns == ("a",)
    full = catalog.table("public", "full_identity")
    assert full is not None and full.replica_identity == "f" and full.has_usable_identity
    scratch = catalog.table("public", "scratch")
    assert scratch is not None and scratch.unlogged

    assert {(o.name, o.kind) for o in catalog.unpublishable} == {
        ("order_totals", "view"),
        ("region_counts", "materialized view"),
    }
    fk = next(fk for fk in catalog.foreign_keys if fk.table == ("public", "orders"))
    assert fk.columns == ("customer_id",) and fk.referenced_table == ("public", "customers")
    assert catalog.fk_neighbours("public", "customers") == {("public", "orders")}

    sequences = {(s.schema, s.name): s.owned_by for s in catalog.sequences}
    assert sequences[("public", "orders_id_seq")] == ("public", "orders", "id")
    assert sequences[("public", "free_standing")] is None
    assert catalog.large_objects == 2
    assert ("plpgsql", "1.0") in catalog.extensions
    # Partition children are counted once in the total, not again through their parent.
    assert catalog.total_bytes == sum(t.total_bytes for t in catalog.tables if not t.is_partitioned)


def test_lists_databases_and_says_why_some_are_skipped(source_cluster: PgCluster, source_db: str) -> None:
    source_cluster.execute("CREATE DATABASE closed_db")
    source_cluster.execute("ALTER DATABASE closed_db ALLOW_CONNECTIONS false")
    try:
        server = list_databases(Endpoint.parse(source_cluster.url(), env={}))
    finally:
        source_cluster.execute("ALTER DATABASE closed_db ALLOW_CONNECTIONS true")
        source_cluster.drop_database("closed_db")
    names = [db.name for db in server.databases]
    assert source_db in names and "postgres" in names
    skipped = {s.name: s.reason for s in server.skipped}
    assert "template" in skipped["template0"] and "template" in skipped["template1"]
    assert "datallowconn" in skipped["closed_db"]
    db = server.database(source_db)
    assert db is not None and db.size_bytes > 0 and db.encoding == "UTF8"
