"""Verify on real clusters: exact differences by key, every type, filters, no key, live replication."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgharness import (
    HOSTILE_SCHEMA,
    LONG_NAME,
    PgCluster,
    create_fixture_schema,
    wait_for,
)
from psycopg import sql

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.events import Cancelled, CancelToken
from pgtide.core.model.plan import Plan
from pgtide.core.model.selection import Selection
from pgtide.core.replication.naming import replication_names
from pgtide.core.verify.compare import (
    ChunkVerified,
    RangesListed,
    RowDifference,
    TableStarted,
    TableVerified,
    Verifier,
    VerifyOptions,
    VerifyReport,
    verify_plan,
)

# Sessions that copy test data pin the output settings, so text COPY round-trips exactly
# even though the two databases get different defaults below.
PINNED = "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex"


@pytest.fixture
def db(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[str]:
    """A database of the same name on both clusters (verify pairs databases by name)."""
    name = source_cluster.create_database()
    target_cluster.create_database(name)
    yield name
    target_cluster.clean_replication()
    source_cluster.clean_replication()
    target_cluster.drop_database(name)
    source_cluster.drop_database(name)


def plan_for(source: PgCluster, target: PgCluster, name: str, **selection: Any) -> Plan:
    return Plan(
        Endpoint.parse(source.url(name), env={}),
        Endpoint.parse(target.url(name), env={}),
        Selection.from_cli(include_databases=name, **selection),
    )


def run_both(source: PgCluster, target: PgCluster, name: str, ddl: str) -> None:
    source.execute(ddl, dbname=name)
    target.execute(ddl, dbname=name)


def copy_rows(source: PgCluster, target: PgCluster, name: str, table: tuple[str, str], where: str = "true") -> None:
    """Copy a table's rows in text format with pinned settings on both sessions."""
    ident = sql.Identifier(*table)
    with source.connect(name, options=PINNED) as src, target.connect(name, options=PINNED) as dst:
        query = sql.SQL("COPY (SELECT * FROM {} WHERE {}) TO STDOUT").format(ident, sql.SQL(where))  # type: ignore[arg-type]
        with src.cursor().copy(query) as out, dst.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(ident)) as inp:
            for data in out:
                inp.write(data)


def by_table(report: VerifyReport) -> dict[str, Any]:
    return {result.name: result for result in report.tables}


# -- exact differences ------------------------------------------------------------------------------


def test_identical_then_exactly_four_differences(source_cluster: PgCluster, target_cluster: PgCluster, db: str) -> None:
    run_both(source_cluster, target_cluster, db,
             "CREATE TABLE items (id bigint PRIMARY KEY, label text, note text, payload jsonb, price numeric(10,2))")
    source_cluster.execute(
        "INSERT INTO items SELECT g, 'item ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' END, "
        "jsonb_build_object('a', g, 'b', ARRAY[1, 2]), g * 1.25 FROM generate_series(1, 30000) g",
        dbname=db,
    )
    copy_rows(source_cluster, target_cluster, db, ("public", "items"))
    events: list[Any] = []
    plan = plan_for(source_cluster, target_cluster, db)

    report = verify_plan(plan, on_event=events.append)
    assert report.ok, report
    (items,) = report.tables
    assert (items.status, items.method, items.source_rows, items.target_rows) == ("match", "key ranges", 30000, 30000)
    assert any(isinstance(e, TableStarted) for e in events) and any(isinstance(e, TableVerified) for e in events)
    assert [e for e in events if isinstance(e, ChunkVerified)][-1].done == 2  # one slice per side

    target_cluster.execute(
        """
        UPDATE items SET label = 'changed' WHERE id = 1234;
        DELETE FROM items WHERE id = 20000;
        INSERT INTO items VALUES (40000, 'new', NULL, NULL, NULL);
        UPDATE items SET note = '' WHERE id = 29997;             -- NULL on the source
        UPDATE items SET payload = '{ "b" : [1,  2],"a":7}' WHERE id = 7;  -- equal as jsonb
        """,
        dbname=db,
    )
    assert source_cluster.execute("SELECT note FROM items WHERE id = 29997", dbname=db) == [(None,)]
    report = verify_plan(plan)
    (items,) = report.tables
    assert not report.ok and items.status == "differ"
    assert items.differences == (
        RowDifference("missing", ("20000",)),
        RowDifference("extra", ("40000",)),
        RowDifference("different", ("1234",)),
        RowDifference("different", ("29997",)),
    )
    assert (items.missing, items.extra, items.different) == (1, 1, 2)
    assert report.summary()["different"] == 2


def test_every_type_round_trips_and_every_column_change_is_found(
    source_cluster: PgCluster, target_cluster: PgCluster, db: str
) -> None:
    ddl = """
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 100);
    CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
    CREATE TYPE pair AS (label text, amount numeric);
    CREATE TABLE all_types (
        id integer PRIMARY KEY,
        c_small smallint, c_big bigint, c_num numeric, c_real real, c_double double precision,
        c_text text, c_varchar varchar(20), c_char char(5), c_bool boolean, c_bytea bytea,
        c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz, c_interval interval,
        c_json json, c_jsonb jsonb, c_uuid uuid, c_inet inet, c_cidr cidr, c_mac macaddr, c_money money,
        c_point point, c_line line, c_lseg lseg, c_box box, c_path path, c_polygon polygon, c_circle circle,
        c_ints integer[], c_texts text[], c_jsonbs jsonb[], c_mood mood, c_short short_text, c_positive positive,
        c_pair pair, c_range int4range, c_tsrange tstzrange, c_bits bit(4), c_varbits varbit, c_tsvector tsvector,
        c_xml xml
    );
    """
    run_both(source_cluster, target_cluster, db, ddl)
    # Different output defaults on the two databases: verify pins its own sessions. (The
    # source keeps an ISO DateStyle: psycopg itself cannot read other styles, e.g. in build_scope.)
    source_cluster.execute(
        sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Kathmandu'; ALTER DATABASE {} SET DateStyle = 'ISO, DMY'; "
                "ALTER DATABASE {} SET IntervalStyle = 'sql_standard'; ALTER DATABASE {} SET extra_float_digits = -3; "
                "ALTER DATABASE {} SET bytea_output = 'escape'").format(*[sql.Identifier(db)] * 5))
    target_cluster.execute(
        sql.SQL("ALTER DATABASE {} SET TimeZone = 'America/St_Johns'; ALTER DATABASE {} SET DateStyle = 'German'; "
                "ALTER DATABASE {} SET IntervalStyle = 'iso_8601'; ALTER DATABASE {} SET extra_float_digits = 0"
                ).format(*[sql.Identifier(db)] * 4))
    values = """
    (1, 1, 9007199254740993, 1.50, 0.1, 1e-300, 'a,b', 'x"y', 'ab', true, '\\x00ff',
     '2024-02-29', '23:59:59.999999', '12:00+05:30', '2024-01-01 00:00:00.000001', '2024-06-01 12:00:00+02',
     '1 year 2 mons 3 days 04:05:06', '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": [1, 2]}',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34,
     '(1.5,2.25)', '{1,-1,0}', '[(0,0),(1,1)]', '((0,0),(2,2))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))',
     '<(0,0),2>', '{1,NULL,3}', '{"a,b",c,"",NULL}', ARRAY['{"k": 1}'::jsonb], 'happy', '', 7,
     ROW('a (b), "c"', 1.10)::pair, '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)', B'1010', B'101',
     'the quick brown fox', '<a x="1">text</a>'),
    (2, -1, -9007199254740993, 'NaN', '-0', 'Infinity', '', '', '', false, '',
     '4713-01-01 BC', '00:00', '00:00-12', 'infinity', '-infinity', '-1 days +00:00:01', 'null', 'null',
     '00000000-0000-0000-0000-000000000000', '::1', '::/0', '00:00:00:00:00:00', -0.01,
     '(0,0)', '{0,1,0}', '[(0,0),(0,0)]', '((0,0),(0,0))', '((0,0),(1,1))', '((0,0))', '<(1,1),0>',
     '{}', '{}', '{}', 'sad', 'x', 1, ROW(NULL, NULL)::pair, 'empty', '(,)', B'0000', B'', '', '<a/>'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
    """
    source_cluster.execute(f"INSERT INTO all_types VALUES {values}", dbname=db)
    copy_rows(source_cluster, target_cluster, db, ("public", "all_types"))
    plan = plan_for(source_cluster, target_cluster, db)
    report = verify_plan(plan)
    assert report.ok and report.tables[0].source_rows == 3, report

    # Change one column per row (row 100 + column index), each to a value that differs only
    # in ways a careless encoding would miss; every single one must be found.
    changes = {
        "c_small": ("0", "NULL"), "c_num": ("1.5", "1.50"), "c_real": ("'0'", "'-0'"), "c_double": ("1", "1.0000000000000002"),
        "c_text": ("''", "NULL"), "c_varchar": ("'a'", "'a '"), "c_char": ("'a'", "'b'"), "c_bytea": ("''", "NULL"),
        "c_tstz": ("'2024-01-01 00:00+00'", "'2024-01-01 00:00:00.000001+00'"),
        "c_interval": ("'1 day'", "'24 hours'"), "c_json": ("'{\"a\":1}'", "'{\"a\": 1}'"),
        "c_jsonb": ("'{\"a\": [1, 2]}'", "'{\"a\": [2, 1]}'"), "c_point": ("'(1,2)'", "'(2,1)'"),
        "c_ints": ("'{1,2}'", "'{{1},{2}}'"), "c_texts": ("ARRAY['a,b','c']", "ARRAY['a','b,c']"),
        "c_mood": ("'ok'", "'happy'"), "c_short": ("''", "NULL"), "c_pair": ("ROW('a,b', 1)::pair", "ROW('a', NULL)::pair"),
        "c_range": ("'[1,2)'", "'[1,3)'"), "c_bits": ("B'0001'", "B'0010'"), "c_xml": ("'<a/>'", "'<a></a>'"),
        "c_money": ("1", "1.01"), "c_timetz": ("'12:00+01'", "'11:00+00'"),
    }
    with source_cluster.connect(db) as src, target_cluster.connect(db) as dst:
        for offset, (column, (before, after)) in enumerate(changes.items()):
            row_id = 100 + offset
            src.execute(f"INSERT INTO all_types (id, {column}) VALUES ({row_id}, {before})")
            dst.execute(f"INSERT INTO all_types (id, {column}) VALUES ({row_id}, {after})")
    report = verify_plan(plan)
    (result,) = report.tables
    expected = {RowDifference("different", (str(100 + i),)) for i in range(len(changes))}
    assert set(result.differences) == expected, list(result.differences)
    assert result.different == len(changes) and result.missing == result.extra == 0


def test_table_without_primary_key(source_cluster: PgCluster, target_cluster: PgCluster, db: str) -> None:
    run_both(source_cluster, target_cluster, db, "CREATE TABLE log (at timestamptz, message text)")
    source_cluster.execute(
        "INSERT INTO log SELECT '2024-01-01'::timestamptz + g * interval '1 minute', "
        "CASE WHEN g % 10 = 0 THEN 'same' ELSE 'm' || g END FROM generate_series(1, 5000) g",
        dbname=db,
    )
    copy_rows(source_cluster, target_cluster, db, ("public", "log"))
    plan = plan_for(source_cluster, target_cluster, db)
    (result,) = verify_plan(plan).tables
    assert (result.status, result.method, result.pinpointed, result.source_rows) == ("match", "row hash", False, 5000)

    # A duplicated row keeps the count equal to a deleted one: the multiset still differs.
    target_cluster.execute(
        "DELETE FROM log WHERE message = 'm1'; "
        "INSERT INTO log SELECT * FROM log WHERE message = 'm2'",
        dbname=db,
    )
    (result,) = verify_plan(plan).tables
    assert result.status == "differ" and result.differences == ()
    assert result.source_rows == result.target_rows == 5000
    assert any("cannot be named" in note for note in result.notes)


def test_filtered_and_schema_only_tables(source_cluster: PgCluster, target_cluster: PgCluster, db: str) -> None:
    run_both(source_cluster, target_cluster, db, """
        CREATE TABLE items (id int PRIMARY KEY, label text);
        CREATE TABLE events (id int PRIMARY KEY, created_at timestamptz NOT NULL);
        CREATE TABLE audit (id int PRIMARY KEY, note text);
    """)
    source_cluster.execute("""
        INSERT INTO items SELECT g, 'i' || g FROM generate_series(1, 1000) g;
        INSERT INTO events SELECT g, now() - g * interval '1 hour' FROM generate_series(1, 1440) g;
        INSERT INTO audit SELECT g, 'a' FROM generate_series(1, 100) g;
    """, dbname=db)
    # What a filtered copy put on the target (a little more for events: outside the cut).
    copy_rows(source_cluster, target_cluster, db, ("public", "items"), "id <= 100")
    copy_rows(source_cluster, target_cluster, db, ("public", "events"), "created_at >= now() - interval '31 days'")
    plan = plan_for(source_cluster, target_cluster, db, table_filters=["items:id <= 100"],
                    time_filters=["events:created_at:30 days"], schema_only_tables=["audit"])
    results = by_table(verify_plan(plan))
    assert {name: r.status for name, r in results.items()} == {"items": "match", "events": "match", "audit": "match"}
    assert results["items"].where == "(id <= 100)" and results["items"].source_rows == 100
    assert results["events"].where is not None and "created_at" in results["events"].where
    assert results["audit"].schema_only and results["audit"].method == "schema only"

    target_cluster.execute("""
        UPDATE items SET label = 'x' WHERE id = 50;
        INSERT INTO items VALUES (500, 'outside the filter: not compared');
        INSERT INTO audit VALUES (1, 'schema-only tables must stay empty');
    """, dbname=db)
    results = by_table(verify_plan(plan))
    assert results["items"].differences == (RowDifference("different", ("50",)),)
    assert results["audit"].status == "differ" and results["audit"].target_rows == 1
    assert results["events"].status == "match"


def test_partitioned_tables(source_cluster: PgCluster, target_cluster: PgCluster, db: str) -> None:
    run_both(source_cluster, target_cluster, db, """
        CREATE TABLE measures (id bigint, at date NOT NULL, value float8, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE measures_2023 PARTITION OF measures FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
        CREATE TABLE measures_2024 PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    """)
    source_cluster.execute("INSERT INTO measures SELECT g, date '2023-06-01' + (g % 400), g / 7.0 "
                           "FROM generate_series(1, 3000) g", dbname=db)
    for leaf in ("measures_2023", "measures_2024"):
        copy_rows(source_cluster, target_cluster, db, ("public", leaf))
    target_cluster.execute("UPDATE measures SET value = -1 WHERE id = 42", dbname=db)
    # Every table: the leaves are compared (by key hash: the key has two columns), the parent skipped.
    results = by_table(verify_plan(plan_for(source_cluster, target_cluster, db)))
    assert results["measures"].status == "skipped"
    leaf = results["measures_2023"] if results["measures_2023"].differences else results["measures_2024"]
    assert leaf.method == "key hash" and len(leaf.differences) == 1
    assert leaf.differences[0].kind == "different" and leaf.differences[0].key[0] == "42"
    # Only the parent selected: its partitions are compared through it.
    results = by_table(verify_plan(plan_for(source_cluster, target_cluster, db, include_tables=["measures"])))
    assert list(results) == ["measures"] and results["measures"].source_rows == 3000
    assert [d.key[0] for d in results["measures"].differences] == ["42"]


def test_hostile_identifiers_and_cli(source_cluster: PgCluster, target_cluster: PgCluster, db: str) -> None:
    tables = create_fixture_schema(source_cluster, db, rows=30)
    create_fixture_schema(target_cluster, db, rows=0)
    for table in tables:
        copy_rows(source_cluster, target_cluster, db, table)
    plan = plan_for(source_cluster, target_cluster, db)
    report = verify_plan(plan, options=VerifyOptions(jobs=3))
    assert report.ok, [(r.display, r.status, r.error) for r in report.tables if not r.ok]
    assert {(r.schema, r.name) for r in report.tables} == set(tables)
    assert by_table(report)["events_no_pk"].method == "row hash"

    target_cluster.execute(sql.SQL("UPDATE {} SET {} = 'changed' WHERE id = 7; DELETE FROM {} WHERE id = 3").format(
        sql.Identifier("public", 'quote"d'), sql.Identifier("Value Col"),
        sql.Identifier(HOSTILE_SCHEMA, "Order.Items")), dbname=db)
    report = verify_plan(plan)
    failing = {(r.schema, r.name): r.differences for r in report.tables if not r.ok}
    assert failing == {
        ("public", 'quote"d'): (RowDifference("different", ("7",)),),
        (HOSTILE_SCHEMA, "Order.Items"): (RowDifference("missing", ("3",)),),
    }

    # The command line: exit codes, --table, --json, redacted errors.
    pgtide = str(Path(sys.executable).parent / "pgtide")
    base = [pgtide, "verify", "--source", source_cluster.url(db), "--target", target_cluster.url(db),
            "--include-databases", db]
    out = subprocess.run([*base, "--table", LONG_NAME, "--table", '"quote""d"'], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert 'different: id=7' in out.stdout and "DIFFERENCES FOUND: 2 table(s)" in out.stdout
    out = subprocess.run([*base, "--table", LONG_NAME, "--json"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 2 and '"ok": true' in out.stdout
    out = subprocess.run([*base, "--table", "no_such_table"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no_such_table" in out.stderr
    bad = f"postgresql://nobody:s3cret-pw@127.0.0.1:1/{db}"
    out = subprocess.run([pgtide, "verify", "--source", source_cluster.url(db), "--target", bad,
                          "--include-databases", db], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "s3cret-pw" not in out.stdout + out.stderr


# -- live replication ------------------------------------------------------------------------------------


def subscribe(source: PgCluster, target: PgCluster, name: str, tables: str, *, filtered: str = "") -> None:
    """pgtide's names: publication, then the slot, then a subscription on it (no initial copy)."""
    names = replication_names(Endpoint.parse(source.url(name), env={}), Endpoint.parse(target.url(name), env={}), name)
    source.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        sql.Identifier(names.publication), sql.SQL(tables + filtered)), dbname=name)  # type: ignore[arg-type]
    with psycopg.connect(host="127.0.0.1", port=source.port, user="postgres", dbname=name, replication="database",
                         autocommit=True, cursor_factory=psycopg.ClientCursor) as repl:
        repl.execute(f"CREATE_REPLICATION_SLOT {names.slot} LOGICAL pgoutput")
    target.execute(
        sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                "WITH (create_slot = false, slot_name = {}, copy_data = false)").format(
            sql.Identifier(names.subscription),
            sql.Literal(f"host=127.0.0.1 port={source.port} user=postgres dbname={name}"),
            sql.Identifier(names.publication), sql.Literal(names.slot)),
        dbname=name,
    )


class Writer(threading.Thread):
    """Keeps changing the source: random updates, inserts and deletes, and one hot row."""

    def __init__(self, cluster: PgCluster, name: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name = cluster, name
        self.stop = threading.Event()
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        next_id = 1_000_000
        try:
            with self.cluster.connect(self.name) as conn:
                while not self.stop.is_set():
                    with conn.transaction():
                        conn.execute("UPDATE items SET v = v + 1 WHERE id = 1")  # the hot row
                        conn.execute("UPDATE items SET v = v + 1, note = md5(random()::text) WHERE id = %s",
                                     [rng.randint(2, 10_000)])
                        conn.execute("INSERT INTO items VALUES (%s, 0, 'new')", [next_id])
                        if next_id % 3 == 0:
                            conn.execute("DELETE FROM items WHERE id = %s", [next_id - 2])
                        conn.execute("UPDATE filtered SET v = v + 1 WHERE id = %s", [rng.randint(1, 2000)])
                    next_id += 1
                    self.transactions += 1
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc


def test_live_replication_in_flight_changes_settle_and_real_ones_are_found(
    source_cluster: PgCluster, target_cluster: PgCluster, db: str
) -> None:
    run_both(source_cluster, target_cluster, db, """
        CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text);
        CREATE TABLE filtered (id int PRIMARY KEY, v int NOT NULL);
    """)
    subscribe(source_cluster, target_cluster, db, "items, filtered", filtered=" WHERE (id <= 1000)")
    source_cluster.execute("""
        INSERT INTO items SELECT g, 0, 'n' || g FROM generate_series(1, 20000) g;
        INSERT INTO filtered SELECT g, 0 FROM generate_series(1, 2000) g;
    """, dbname=db)
    wait_for(lambda: target_cluster.execute("SELECT count(*) FROM items", dbname=db)[0][0] == 20000,
             what="the initial rows to replicate")
    plan = plan_for(source_cluster, target_cluster, db, table_filters=["filtered:id <= 1000"])
    writer = Writer(source_cluster, db)
    writer.start()
    try:
        wait_for(lambda: writer.transactions > 50, what="the writer to get going")
        report = verify_plan(plan)
        assert report.live_databases == (db,)
        results = by_table(report)
        assert {n: (r.status, r.differences) for n, r in results.items()} == {
            "items": ("match", ()), "filtered": ("match", ())}, [r.notes for r in report.tables]
        assert results["filtered"].where is not None and "1000" in results["filtered"].where
        assert results["items"].resolved_in_flight + results["items"].still_changing > 0

        # Rows the writer never touches, changed on the target only: real differences.
        target_cluster.execute("UPDATE items SET note = 'planted' WHERE id = 15000; "
                               "DELETE FROM items WHERE id = 15001", dbname=db)
        report = verify_plan(plan, tables=["items"])
        (items,) = report.tables
        assert items.differences == (RowDifference("missing", ("15001",)), RowDifference("different", ("15000",)))
        assert not items.unsettled
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert writer.error is None and writer.transactions > 100


# -- many differences: dense ranges are listed, not bisected -----------------------------------------------


DENSE_ROWS = 40_000


@pytest.fixture
def dense_db(source_cluster: PgCluster, target_cluster: PgCluster, db: str) -> str:
    """The same 40,000 rows on both sides (4 first-pass buckets of 10,000 keys)."""
    run_both(source_cluster, target_cluster, db, "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text)")
    for cluster in (source_cluster, target_cluster):
        cluster.execute(f"INSERT INTO items SELECT g, g, md5(g::text) FROM generate_series(1, {DENSE_ROWS}) g",
                        dbname=db)
    return db


def listed(events: list[Any]) -> list[RangesListed]:
    return [e for e in events if isinstance(e, RangesListed)]


def test_target_missing_every_row_is_counted_exactly_and_lists_only_the_first_keys(
    source_cluster: PgCluster, target_cluster: PgCluster, dense_db: str
) -> None:
    target_cluster.execute("TRUNCATE items", dbname=dense_db)
    events: list[Any] = []
    # Fewer keys tracked than missing: the rest must still be counted, exactly.
    options = VerifyOptions(max_keys=5, tracked_keys=1000)
    (result,) = verify_plan(plan_for(source_cluster, target_cluster, dense_db), options=options,
                            on_event=events.append).tables
    assert (result.status, result.method) == ("differ", "key ranges")
    assert (result.missing, result.extra, result.different) == (DENSE_ROWS, 0, 0)
    assert (result.source_rows, result.target_rows) == (DENSE_ROWS, 0)
    assert result.differences == tuple(RowDifference("missing", (str(i),)) for i in range(1, 6))
    # Four empty buckets side by side: one range, listed whole (never bisected).
    assert (result.listed_ranges, result.dense_ranges) == (1, 1)
    assert [(e.ranges, e.dense, e.differences) for e in listed(events)] == [(1, 1, DENSE_ROWS)]
    assert not any("bisecting" in getattr(e, "reason", "") for e in events)
    assert any("more than 1000 differing rows" in note for note in result.notes)


def test_target_missing_a_tenth_of_its_rows(
    source_cluster: PgCluster, target_cluster: PgCluster, dense_db: str
) -> None:
    target_cluster.execute("DELETE FROM items WHERE id % 10 = 5; INSERT INTO items VALUES (50000, 0, 'x')",
                           dbname=dense_db)
    events: list[Any] = []
    (result,) = verify_plan(plan_for(source_cluster, target_cluster, dense_db), options=VerifyOptions(max_keys=3),
                            on_event=events.append).tables
    assert (result.missing, result.extra, result.different) == (DENSE_ROWS // 10, 1, 0), result
    assert result.differences == (RowDifference("missing", ("5",)), RowDifference("missing", ("15",)),
                                  RowDifference("missing", ("25",)))
    # Counts 10 % apart in every bucket: listed without bisecting; the extra key's bucket too.
    assert result.dense_ranges >= 1 and listed(events)[0].differences == DENSE_ROWS // 10 + 1
    assert not any("bisecting" in getattr(e, "reason", "") for e in events)


def test_a_tenth_of_the_rows_changed(source_cluster: PgCluster, target_cluster: PgCluster, dense_db: str) -> None:
    # Equal counts everywhere, so the counts alone say nothing: one bisection level shows
    # every sub-range differing, and the buckets are then listed whole.
    target_cluster.execute("UPDATE items SET v = v + 1 WHERE id % 10 = 3", dbname=dense_db)
    events: list[Any] = []
    (result,) = verify_plan(plan_for(source_cluster, target_cluster, dense_db), options=VerifyOptions(max_keys=4),
                            on_event=events.append).tables
    assert (result.missing, result.extra, result.different) == (0, 0, DENSE_ROWS // 10)
    assert [d.key[0] for d in result.differences] == ["3", "13", "23", "33"]
    assert {d.kind for d in result.differences} == {"different"}
    assert result.dense_ranges == result.listed_ranges == 1  # the four buckets, joined
    assert sum(1 for e in events if "bisecting" in getattr(e, "reason", "")) == 1


def test_sparse_and_dense_differences_in_one_table(
    source_cluster: PgCluster, target_cluster: PgCluster, dense_db: str
) -> None:
    # Keys 1..10000 gone (one-sided bucket), a single changed row far away (bisected down
    # to a small leaf), and one extra key beyond the source's last.
    target_cluster.execute("DELETE FROM items WHERE id <= 10000; UPDATE items SET note = 'x' WHERE id = 31234; "
                           "INSERT INTO items VALUES (40001, 1, 'extra')", dbname=dense_db)
    (result,) = verify_plan(plan_for(source_cluster, target_cluster, dense_db),
                            options=VerifyOptions(max_keys=20_000)).tables
    assert (result.missing, result.extra, result.different) == (10_000, 1, 1)
    assert result.differences[0] == RowDifference("missing", ("1",))
    assert result.differences[9999] == RowDifference("missing", ("10000",))
    assert result.differences[10_000:] == (RowDifference("extra", ("40001",)), RowDifference("different", ("31234",)))
    assert result.dense_ranges >= 1 and result.listed_ranges > result.dense_ranges


def test_live_dense_differences_are_exact_while_the_source_keeps_changing(
    source_cluster: PgCluster, target_cluster: PgCluster, db: str
) -> None:
    run_both(source_cluster, target_cluster, db, """
        CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text);
        CREATE TABLE filtered (id int PRIMARY KEY, v int NOT NULL);
    """)
    subscribe(source_cluster, target_cluster, db, "items, filtered")
    source_cluster.execute("""
        INSERT INTO items SELECT g, 0, 'n' || g FROM generate_series(1, 20000) g;
        INSERT INTO filtered SELECT g, 0 FROM generate_series(1, 2000) g;
    """, dbname=db)
    wait_for(lambda: target_cluster.execute("SELECT count(*) FROM items", dbname=db)[0][0] == 20000,
             what="the initial rows to replicate")
    # A tenth of the rows the writer never touches, lost on the target only.
    target_cluster.execute("DELETE FROM items WHERE id > 10000 AND id <= 20000 AND id % 10 = 5", dbname=db)
    writer = Writer(source_cluster, db)
    writer.start()
    try:
        wait_for(lambda: writer.transactions > 50, what="the writer to get going")
        events: list[Any] = []
        report = verify_plan(plan_for(source_cluster, target_cluster, db), tables=["items"], on_event=events.append)
        (items,) = report.tables
        assert report.live_databases == (db,)
        assert (items.missing, items.extra, items.different) == (1000, 0, 0), items.notes
        assert items.differences[:2] == (RowDifference("missing", ("10005",)), RowDifference("missing", ("10015",)))
        assert not items.unsettled and items.dense_ranges >= 1 and listed(events)
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert writer.error is None


# -- cancelling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["token", "verifier"])
def test_cancel_stops_a_running_verify(source_cluster: PgCluster, target_cluster: PgCluster, dense_db: str,
                                       how: str) -> None:
    """A verify blocked in a query on the target (a lock held elsewhere) stops with Cancelled."""
    token = CancelToken()
    verifier = Verifier(VerifyOptions(live=False), cancel=token if how == "token" else None)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            verify_plan(plan_for(source_cluster, target_cluster, dense_db), verifier=verifier)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with target_cluster.connect(dense_db, autocommit=False) as blocker:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_for(lambda: target_cluster.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgtide-verify' AND wait_event_type = 'Lock'",
        )[0][0] > 0, what="verify to wait on the lock")
        if how == "token":
            token.cancel()
        else:
            verifier.cancel()
        thread.join(timeout=25)
        blocker.rollback()
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled), outcome
    assert verifier.token.cancelled


def test_dense_mixed_differences_are_counted_exactly_beyond_the_keys_tracked(
    source_cluster: PgCluster, target_cluster: PgCluster, dense_db: str
) -> None:
    # Every kind in the same dense range, compared on the target's server chunk by chunk
    # (small chunks: many of them), with far fewer keys tracked than differ.
    target_cluster.execute("DELETE FROM items WHERE id % 10 = 1; UPDATE items SET note = '%' WHERE id % 10 = 2; "
                           "INSERT INTO items SELECT g, g, 'x' FROM generate_series(40001, 40100) g", dbname=dense_db)
    options = VerifyOptions(max_keys=4, tracked_keys=50, stream_rows=777, live=False)
    (result,) = verify_plan(plan_for(source_cluster, target_cluster, dense_db), options=options).tables
    assert (result.missing, result.extra, result.different) == (DENSE_ROWS // 10, 100, DENSE_ROWS // 10), result
    assert [(d.kind, d.key[0]) for d in result.differences] == [
        ("missing", "1"), ("missing", "11"), ("missing", "21"), ("missing", "31")]
    assert any("more than 50 differing rows" in note for note in result.notes)
