"""Schema drift during a live migration: found by status, fixed by schema apply or sync --recopy.

Real servers: a migration is started with init, the source's schema is changed while it
streams, and the target must end identical (verify clean) with replication running again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import wait_until_identical
from pgharness import PgCluster, wait_for
from psycopg import sql

from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.monitor.drift import Column, TableFingerprint, compare
from pgtide.core.monitor.poll import Monitor
from pgtide.core.verify.compare import VerifyOptions, verify_plan

PGTIDE = str(Path(sys.executable).parent / "pgtide")
DB = "drift_shop"


def _url(cluster: PgCluster) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{DB}"


def _plan(source: PgCluster, target: PgCluster) -> Plan:
    return Plan(Endpoint.parse(_url(source), env={}), Endpoint.parse(_url(target), env={}), Selection(),
                Options(jobs=1))


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PGTIDE, *args], capture_output=True, text=True, timeout=timeout)


def _ends(source: PgCluster, target: PgCluster) -> list[str]:
    return ["--source", _url(source), "--target", _url(target)]


@pytest.fixture
def streaming(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[tuple[PgCluster, PgCluster]]:
    source_cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    source_cluster.execute(
        "CREATE TYPE mood AS ENUM ('calm', 'busy'); "
        "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int NOT NULL DEFAULT 1, m mood); "
        "INSERT INTO orders SELECT g, 'item ' || g, g % 5, 'calm' FROM generate_series(1, 200) g; "
        "CREATE TABLE notes (id int PRIMARY KEY, body text); "
        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;",
        dbname=DB)
    results = migrate.init(_plan(source_cluster, target_cluster))
    assert [r.status for r in results] == ["streaming"]
    yield source_cluster, target_cluster
    target_cluster.clean_replication()
    target_cluster.drop_database(DB)
    source_cluster.clean_replication()
    source_cluster.drop_database(DB)


def _status(source: PgCluster, target: PgCluster) -> tuple[int, dict[str, Any], str]:
    result = _cli("status", *_ends(source, target), "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    db = next(r for r in rows if r.get("database") == DB)
    return result.returncode, db, result.stdout + result.stderr


def _verify_clean(source: PgCluster, target: PgCluster) -> None:
    report = verify_plan(_plan(source, target), options=VerifyOptions(recheck_timeout=60))
    assert report.ok, [(t.display, t.status, t.difference_count, t.error) for t in report.tables]


def _wait_streaming(source: PgCluster, target: PgCluster, timeout: float = 60) -> None:
    with Monitor.from_plan(_plan(source, target), [DB]) as monitor:
        def ready() -> bool:
            db = monitor.poll().databases[0]
            return db.state.value == "streaming" and db.target.enabled
        wait_for(ready, timeout=timeout, interval=0.5, what="the subscription to stream again")


def test_a_column_added_on_the_source_is_drift_that_schema_apply_fixes(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    source.execute("ALTER TABLE orders ADD COLUMN note text DEFAULT 'none'; "
                   "ALTER TYPE mood ADD VALUE 'angry'; "
                   "CREATE INDEX orders_item ON orders (item);", dbname=DB)
    source.execute("INSERT INTO orders VALUES (1001, 'new', 2, 'angry', 'with a note'); "
                   "UPDATE orders SET note = 'changed' WHERE id = 3", dbname=DB)
    code, db, text = _status(source, target)
    assert code == 1, text
    tables = {t["schema"] + "." + t["name"]: t for t in db["drift"]["tables"]}
    assert "public.orders" in tables, text
    details = " | ".join(d["detail"] for d in tables["public.orders"]["differences"])
    assert '"note"' in details and "missing on the target" in details and "angry" in details, details
    human = _cli("status", *_ends(source, target))
    assert human.returncode == 1 and "DRIFT public.orders" in human.stdout and '"note"' in human.stdout, human.stdout

    diff = _cli("schema", "diff", *_ends(source, target))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert 'ALTER TABLE "public"."orders" ADD COLUMN "note" text DEFAULT \'none\'::text' in diff.stdout, diff.stdout
    refused = _cli("schema", "apply", *_ends(source, target))  # no terminal, no --yes: asks, cannot
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stdout + refused.stderr
    applied = _cli("schema", "apply", *_ends(source, target), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "ADD VALUE IF NOT EXISTS 'angry' AFTER 'busy'" in applied.stdout, applied.stdout

    _wait_streaming(source, target)
    source.execute("INSERT INTO orders VALUES (1002, 'after', 3, 'busy', 'streamed')", dbname=DB)
    wait_until_identical(source, target, DB, {("public", "orders"): None, ("public", "notes"): None})
    code, db, text = _status(source, target)
    assert code == 0 and not db["drift"]["tables"], text
    _verify_clean(source, target)


def test_a_new_source_table_is_created_copied_and_streamed_by_schema_apply(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    source.execute("CREATE TABLE invoices (id bigserial PRIMARY KEY, order_id int REFERENCES orders, total numeric); "
                   "INSERT INTO invoices (order_id, total) SELECT g, g * 1.5 FROM generate_series(1, 100) g;",
                   dbname=DB)
    code, db, text = _status(source, target)
    assert code == 1, text
    new = [t for t in db["drift"]["tables"] if t["name"] == "invoices"]
    assert new and new[0]["differences"][0]["kind"] == "new_table", text

    stop = threading.Event()

    def write() -> None:
        with source.connect(DB) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO invoices (order_id, total) VALUES (7, random())")
                conn.execute("UPDATE invoices SET total = total + 1 WHERE id = (SELECT max(id) - 3 FROM invoices)")
                time.sleep(0.005)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        applied = _cli("schema", "apply", *_ends(source, target), "--yes")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "REFRESH PUBLICATION WITH (copy_data = true)" in applied.stdout, applied.stdout
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join(timeout=30)
    _wait_streaming(source, target)
    wait_until_identical(source, target, DB, {("public", "invoices"): None, ("public", "orders"): None})
    code, db, text = _status(source, target)
    assert code == 0 and not db["drift"]["tables"], text
    _verify_clean(source, target)


def test_a_type_change_names_the_table_for_recopy_and_recopy_makes_it_identical_under_a_writer(
        streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    source.execute("ALTER TABLE notes ALTER COLUMN body TYPE varchar(40)", dbname=DB)
    diff = _cli("schema", "diff", *_ends(source, target), "--json")
    assert diff.returncode == 1, diff.stdout + diff.stderr
    report = json.loads(diff.stdout.splitlines()[0])
    assert report["recopy"] == ["public.notes"], report
    kinds = [d["kind"] for t in report["tables"] for d in t["differences"]]
    assert kinds == ["type_changed"], report
    human = _cli("status", *_ends(source, target))
    assert "pgtide sync --recopy public.notes" in human.stdout, human.stdout

    stop = threading.Event()
    counter = [0]

    def write() -> None:
        with source.connect(DB) as conn:
            while not stop.is_set():
                counter[0] += 1
                conn.execute("INSERT INTO notes VALUES (%s, %s)", [1000 + counter[0], f"live {counter[0]}"])
                conn.execute("UPDATE notes SET body = %s WHERE id = %s", [f"edit {counter[0]}", counter[0] % 50 + 1])
                conn.execute("UPDATE orders SET qty = qty + 1 WHERE id = %s", [counter[0] % 200 + 1])
                time.sleep(0.005)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        time.sleep(0.5)
        recopy = _cli("sync", *_ends(source, target), "--recopy", "notes")
        assert recopy.returncode == 0, recopy.stdout + recopy.stderr
        time.sleep(1.5)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert counter[0] > 20
    _wait_streaming(source, target)
    wait_until_identical(source, target, DB, {("public", "notes"): None, ("public", "orders"): None})
    typed = target.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                           "WHERE attrelid = 'notes'::regclass AND attname = 'body'", dbname=DB)
    assert typed == [("character varying(40)",)]
    code, db, text = _status(source, target)
    assert code == 0 and not db["drift"]["tables"], text
    _verify_clean(source, target)


def _table(columns: list[Column], *, published: bool = True) -> TableFingerprint:
    return TableFingerprint("public", "t", "r", "p", published, published, tuple(columns), {}, ())


def test_a_volatile_default_is_added_but_named_for_recopy() -> None:
    plain = Column("id", "integer", True, "", "", None, None, "pg_catalog", "int4")
    stamped = Column("at", "timestamp with time zone", False, "", "", "now()", None, "pg_catalog", "timestamptz")
    constant = Column("n", "integer", True, "", "", "0", None, "pg_catalog", "int4")
    report = compare("db", [_table([plain, stamped, constant])], [_table([plain])], publication="p",
                     subscription="s")
    (drift,) = report.tables
    assert drift.needs_recopy and report.recopy_tables == ("public.t",)
    sqls = [s.sql for s in report.statements]
    assert sqls == ['ALTER TABLE "public"."t" ADD COLUMN "at" timestamp with time zone',
                    'ALTER TABLE "public"."t" ALTER COLUMN "at" SET DEFAULT now()',
                    'ALTER TABLE "public"."t" ADD COLUMN "n" integer DEFAULT 0 NOT NULL']


def test_recopy_statements_give_an_emptied_table_the_source_columns() -> None:
    from pgtide.core.monitor.drift import recopy_statements

    key = Column("id", "integer", True, "", "", None, None, "pg_catalog", "int4")
    old_type = Column("v", "integer", False, "", "", "0", None, "pg_catalog", "int4")
    new_type = Column("v", "text", False, "", "", "'x'::text", None, "pg_catalog", "text")
    dropped = Column("gone", "text", False, "", "", None, None, "pg_catalog", "text")
    report = compare("db", [_table([key, new_type])], [_table([key, old_type, dropped])], publication="p",
                     subscription="s")
    assert [d.kind for d in report.tables[0].differences] == ["type_changed", "column_dropped"]
    assert report.recopy_tables == ("public.t",) and not report.statements
    assert recopy_statements(_table([key, new_type]), _table([key, old_type, dropped])) == [
        'ALTER TABLE "public"."t" ALTER COLUMN "v" DROP DEFAULT',
        'ALTER TABLE "public"."t" ALTER COLUMN "v" TYPE text USING NULL',
        'ALTER TABLE "public"."t" ALTER COLUMN "v" SET DEFAULT \'x\'::text',
        'ALTER TABLE "public"."t" DROP COLUMN "gone"',
    ]


@pytest.mark.crossversion
@pytest.mark.parametrize("major", [16, 18])
def test_a_fresh_migration_to_a_newer_major_shows_no_drift(source_cluster: PgCluster,
                                                            cluster_factory: Any, major: int) -> None:
    """The catalogs' deparsed text must read alike across versions, or every migration would drift."""
    target = cluster_factory(major=major)
    source_cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    try:
        source_cluster.execute(
            "CREATE TYPE mood AS ENUM ('calm', 'busy'); CREATE SEQUENCE seq; "
            "CREATE TABLE parent (id bigserial PRIMARY KEY, code varchar(12) UNIQUE NOT NULL, m mood, "
            "  n numeric(10,2) DEFAULT 0 CHECK (n >= 0), at timestamptz DEFAULT now(), s int DEFAULT nextval('seq'), "
            "  g int GENERATED ALWAYS AS (id * 2) STORED); "
            "CREATE TABLE child (id int PRIMARY KEY, parent_id bigint REFERENCES parent ON DELETE CASCADE, "
            "  tags text[] NOT NULL DEFAULT '{}'); CREATE INDEX child_parent ON child (parent_id) WHERE id > 0; "
            "INSERT INTO parent (code, m) VALUES ('a', 'calm');", dbname=DB)
        plan = _plan(source_cluster, target)
        assert [r.status for r in migrate.init(plan)] == ["streaming"]
        with Monitor.from_plan(plan, [DB]) as monitor:
            report = monitor.drift(DB)
        assert report.error is None and not report.drifted, [(t.display, t.summary()) for t in report.tables]
    finally:
        target.clean_replication()
        source_cluster.clean_replication()
        source_cluster.drop_database(DB)


def test_recopy_recovers_a_subscription_a_type_change_stopped(streaming: tuple[PgCluster, PgCluster]) -> None:
    source, target = streaming
    source.execute("ALTER TABLE orders ALTER COLUMN qty DROP DEFAULT, ALTER COLUMN qty TYPE text; "
                   "UPDATE orders SET qty = 'many' WHERE id = 5", dbname=DB)
    with Monitor.from_plan(_plan(source, target), [DB]) as monitor:
        def stopped() -> bool:
            db = monitor.poll().databases[0]
            return not db.target.enabled and db.state.value == "broken"
        wait_for(stopped, timeout=60, interval=0.3, what="apply to stop on the value the target cannot take")
    code, db, text = _status(source, target)
    assert code == 1 and db["drift"]["tables"][0]["name"] == "orders", text
    recopy = _cli("sync", *_ends(source, target), "--recopy", "public.orders")
    assert recopy.returncode == 0, recopy.stdout + recopy.stderr
    source.execute("UPDATE orders SET qty = 'plenty' WHERE id = 6", dbname=DB)
    _wait_streaming(source, target)
    wait_until_identical(source, target, DB, {("public", "orders"): None, ("public", "notes"): None})
    code, db, text = _status(source, target)
    assert code == 0 and not db["drift"]["tables"], text
    _verify_clean(source, target)
