"""Rules checked against a real source: names, predicates, time cuts, replica identity, FK safety."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pgharness import PgCluster, create_fixture_schema

from pgtide.core.catalog.scope import build_scope
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import InputError
from pgtide.core.model.selection import Selection


@pytest.fixture
def source(source_cluster: PgCluster, source_db: str) -> Endpoint:
    create_fixture_schema(source_cluster, source_db, rows=30)
    source_cluster.execute(
        """
        CREATE TABLE readings (id int PRIMARY KEY, at timestamp NOT NULL, day date NOT NULL, label text);
        INSERT INTO readings SELECT g, '2026-01-01'::timestamp + g * interval '1 day',
                                    '2026-01-01'::date + g, 'r' || g FROM generate_series(1, 100) g;
        ALTER TABLE readings REPLICA IDENTITY FULL;
        ANALYZE;
        """,
        dbname=source_db,
    )
    return Endpoint.parse(source_cluster.url(dbname=source_db), env={})


def _scope(source: Endpoint, db: str, **flags: object):  # type: ignore[no-untyped-def]
    return build_scope(source, Selection.from_cli(include_databases=db, **flags))  # type: ignore[arg-type]


def test_full_selection_and_treatments(source: Endpoint, source_db: str) -> None:
    scope = _scope(
        source, source_db,
        schema_only_tables=['"My Schema"."Order.Items"', "orders"],
        table_filters=["customers:id <= 15"],
        exclude_tables=["events_no_pk"],
    )
    (db,) = scope.databases
    assert db.name == source_db
    items = db.table("My Schema", "Order.Items")
    assert items is not None and items.mode == "schema_only" and items.estimated_bytes == 0
    customers = db.table("public", "customers")
    assert customers is not None and customers.where == "(id <= 15)" and customers.filter_columns == ("id",)
    assert customers.estimated_rows is not None and 10 <= customers.estimated_rows <= 20
    assert 0 < customers.estimated_bytes < customers.info.total_bytes
    assert db.table("public", "events_no_pk") is None
    assert any(e.name == "events_no_pk" and "--exclude-tables" in e.reason for e in db.excluded)
    assert db.table("public", "MixedCase") is not None and db.table("public", "MixedCase").where is None  # type: ignore[union-attr]


def test_typo_in_column_is_caught_with_suggestion(source: Endpoint, source_db: str) -> None:
    with pytest.raises(InputError) as info:
        _scope(source, source_db, table_filters=["customers:regoin = 'eu'"])
    assert "rejected by the server" in info.value.cause and "regoin" in info.value.cause
    assert "Did you mean region" in info.value.remedy


def test_injection_attempts_are_refused_before_reaching_the_server(
    source_cluster: PgCluster, source: Endpoint, source_db: str
) -> None:
    for predicate in ("true; DROP TABLE orders", "true --; DROP TABLE orders", "true /* ; */"):
        with pytest.raises(InputError):
            _scope(source, source_db, table_filters=[f"orders:{predicate}"])
    # A predicate that is one statement but would write is only ever planned, in a read-only transaction.
    with pytest.raises(InputError):
        _scope(source, source_db, table_filters=["orders:id IN (SELECT id FROM orders FOR UPDATE)"])
    assert source_cluster.execute("SELECT count(*) FROM orders", dbname=source_db)[0][0] == 60


def test_unknown_table_and_closest_name(source: Endpoint, source_db: str) -> None:
    with pytest.raises(InputError) as info:
        _scope(source, source_db, schema_only_tables=["custmers"])
    assert "no table public.custmers" in info.value.cause and "customers" in info.value.remedy


def test_unknown_database_suggests(source: Endpoint, source_db: str) -> None:
    with pytest.raises(InputError) as info:
        build_scope(source, Selection.from_cli(include_databases=source_db + "x"))
    assert source_db in info.value.remedy


def test_two_part_name_resolves_as_schema_table(source: Endpoint, source_db: str) -> None:
    scope = _scope(source, source_db, schema_only_tables=['"My Schema"."Order.Items"', "public.orders"])
    db = scope.databases[0]
    assert db.table("public", "orders").mode == "schema_only"  # type: ignore[union-attr]


def test_time_filters_resolve_to_literals_of_the_column_type(source: Endpoint, source_db: str) -> None:
    now = datetime(2026, 4, 11, 12, 30, tzinfo=UTC)
    selection = Selection.from_cli(
        include_databases=source_db,
        time_filters=["orders:created_at:6 months", "readings:at:30 days"],
    )
    scope = build_scope(source, selection, now=now, replicate=False)
    db = scope.databases[0]
    orders = db.table("public", "orders")
    readings = db.table("public", "readings")
    assert orders is not None and readings is not None
    assert orders.time_cutoff == "'2025-10-11 12:30:00+00:00'"
    # The server's own text of the predicate is what the copy and the publication use.
    assert orders.where == "(created_at >= '2025-10-11 12:30:00+00'::timestamp with time zone)"
    assert readings.time_cutoff == "'2026-03-12 12:30:00'"  # timestamp without time zone: plain literal
    assert readings.estimated_rows is not None and 20 <= readings.estimated_rows <= 40
    assert scope.resolved_at == now


def test_time_filter_uses_the_server_clock_by_default(source: Endpoint, source_db: str) -> None:
    scope = _scope(source, source_db, time_filters=["readings:day:1 year"])
    readings = scope.databases[0].table("public", "readings")
    assert readings is not None and readings.time_cutoff is not None
    assert readings.time_cutoff == f"'{scope.resolved_at.date().replace(year=scope.resolved_at.year - 1).isoformat()}'"


def test_time_filter_needs_a_time_column(source: Endpoint, source_db: str) -> None:
    with pytest.raises(InputError) as info:
        _scope(source, source_db, time_filters=["readings:label:3 days"])
    assert "not a timestamp" in info.value.cause and '"at"' not in info.value.remedy and "at, day" in info.value.remedy
    with pytest.raises(InputError) as info:
        _scope(source, source_db, time_filters=["readings:dya:3 days"])
    assert "Did you mean day" in info.value.remedy


def test_publication_rejects_non_immutable_filter(source: Endpoint, source_db: str) -> None:
    with pytest.raises(InputError) as info:
        _scope(source, source_db, table_filters=["orders:created_at >= now() - interval '6 months'"])
    assert "row filter is not immutable" in info.value.cause
    assert "--time-filter" in info.value.remedy
    # Refused for a copy that is not replicated too: a later verify could not re-evaluate
    # now() to the same rows.
    with pytest.raises(InputError) as info:
        build_scope(source, Selection.from_cli(
            include_databases=source_db, table_filters=["orders:created_at >= now() - interval '6 months'"]),
            replicate=False)
    assert "--time-filter" in info.value.remedy


def test_filter_outside_replica_identity_is_refused_with_the_fix(source: Endpoint, source_db: str) -> None:
    for flags in ({"table_filters": ["customers:region = 'eu'"]}, {"time_filters": ["orders:created_at:6 months"]}):
        with pytest.raises(InputError) as info:
            _scope(source, source_db, **flags)
        assert "not part of the table's replica identity" in info.value.cause
        assert "REPLICA IDENTITY FULL" in info.value.remedy
    # With REPLICA IDENTITY FULL, any column may be filtered on.
    scope = _scope(source, source_db, time_filters=["readings:at:30 days"])
    assert scope.databases[0].table("public", "readings").filter_columns == ("at",)  # type: ignore[union-attr]


def test_fk_safety_refuses_unsafe_filtered_set(source: Endpoint, source_db: str) -> None:
    with pytest.raises(InputError) as info:
        _scope(source, source_db, table_filters=["customers:id < 10"], exclude_tables=["orders"])
    assert "public.orders" in info.value.cause and info.value.title == "Foreign keys cross the selection"
    # A referencing table copied in full would hold rows whose parent was filtered out.
    with pytest.raises(InputError) as info:
        _scope(source, source_db, table_filters=["customers:id < 10"])
    assert "public.orders is copied in full" in info.value.cause.replace(f"{source_db}.", "")
    assert "Filter public.orders the same way" in info.value.remedy
    # With the referencing table in scope and safe (schema-only here) it is accepted.
    scope = _scope(source, source_db, table_filters=["customers:id < 10"], schema_only_tables=["orders"])
    assert scope.databases[0].table("public", "customers").where == "(id < 10)"  # type: ignore[union-attr]


def test_filters_for_replication_need_pg15() -> None:
    from pgtide.core.catalog.scope import check_filter_support

    filtered = Selection.from_cli(table_filters=["orders:id > 1"])
    with pytest.raises(InputError, match="PostgreSQL 15"):
        check_filter_support(140011, filtered, replicate=True)
    check_filter_support(140011, filtered, replicate=False)  # a one-off copy may filter on any version
    check_filter_support(140011, Selection(), replicate=True)
    check_filter_support(150004, filtered, replicate=True)
