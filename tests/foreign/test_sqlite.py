"""SQLite into PostgreSQL, both layouts, against a real target cluster and real SQLite files."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from foreign_support import plan_for

from pgtide.core.foreign.endpoint import ForeignEndpoint, looks_foreign
from pgtide.core.foreign.session import ForeignSession
from pgtide.core.infra.errors import InputError

HOSTILE = 'we"ird ta;ble ✓'


def build(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(f"""
        CREATE TABLE items (
            id INTEGER PRIMARY KEY, qty INTEGER, price REAL, name TEXT, blob BLOB, untyped,
            born DATE, seen DATETIME, amount NUMERIC, flag BOOLEAN, doc JSON
        );
        CREATE INDEX items_name ON items (name);
        CREATE TABLE "{HOSTILE.replace('"', '""')}" ("sel""ect" TEXT PRIMARY KEY, "order" INTEGER);
        CREATE TABLE loose (a TEXT, b INTEGER);
        CREATE TABLE child (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id));
    """)
    conn.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
        (1, 5, 1.5, "plain", b"\xff\x00\xfe", None, "2024-02-29", "2024-02-29 13:14:15", "12.50", 1, '{"a": [1, 2]}'),
        (2, -7, float("inf"), "emoji 🐘 and NUL", b"text in a blob", 42, "1999-12-31",
         "2000-01-01T00:00:00.123456", "0.000001", 0, None),
        (3, None, None, None, None, None, None, None, None, None, None),
    ])
    conn.executemany(f'INSERT INTO "{HOSTILE.replace(chr(34), chr(34) * 2)}" VALUES (?, ?)',
                     [("k1", 1), ("k'2", 2)])
    conn.executemany("INSERT INTO loose VALUES (?, ?)", [("x", 1), ("x", 1), ("y", None)])
    conn.executemany("INSERT INTO child VALUES (?, ?)", [(10, 1), (11, 2)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return build(tmp_path / "shop.db")


def test_endpoint_forms(sqlite_file: Path, tmp_path: Path) -> None:
    assert looks_foreign(str(sqlite_file)) and looks_foreign(f"sqlite:///{sqlite_file}")
    assert not looks_foreign("postgresql://x@y/db") and not looks_foreign("host=x dbname=y")
    assert ForeignEndpoint.parse(str(sqlite_file)).path == str(sqlite_file)
    assert ForeignEndpoint.parse(f"sqlite:///{sqlite_file}").path == str(sqlite_file)
    (tmp_path / "not.db").write_text("hello")
    with pytest.raises(InputError, match="not an SQLite 3 database"):
        ForeignEndpoint.parse(f"sqlite:///{tmp_path / 'not.db'}")
    with pytest.raises(InputError, match="no SQLite file"):
        ForeignEndpoint.parse(f"sqlite:///{tmp_path / 'missing.db'}")
    url = ForeignEndpoint.parse("mysql://app:s3cr%40t@db.example:3307/shop")
    assert "s3cr" not in url.redacted() and "s3cr" not in repr(url) and url.password == "s3cr@t"
    assert url.redacted() == "mysql://app@db.example:3307/shop"


def _rows(cluster: Any, db: str, query: str) -> list[Any]:
    return cluster.execute(query, dbname=db)


def test_typed_layout_values_field_by_field(sqlite_file: Path, target_cluster: Any, target_db: str) -> None:
    session = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db, layout="typed"))
    report = session.validate()
    assert report.ok, [c for c in report.checks if c.status == "error"]
    assert {c.name for c in report.checks if c.status == "warning"} >= {"keys", "change capture"}
    session.init()
    rows = _rows(target_cluster, target_db, "SELECT id, qty, price, name, blob, untyped, born, seen, amount, flag, doc "
                                            "FROM items ORDER BY id")
    assert rows[0] == (1, 5, 1.5, "plain", b"\xff\x00\xfe", None, dt.date(2024, 2, 29),
                       dt.datetime(2024, 2, 29, 13, 14, 15, tzinfo=dt.UTC), Decimal("12.50"), True, {"a": [1, 2]})
    assert rows[1][2] == float("inf") and rows[1][3] == "emoji 🐘 and NUL" and rows[1][5] == "42"
    assert rows[1][7] == dt.datetime(2000, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC)
    assert rows[2] == (3, *([None] * 10))
    types = dict(_rows(target_cluster, target_db, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                                                  "WHERE attrelid = 'items'::regclass AND attnum > 0"))
    assert types == {"id": "bigint", "qty": "bigint", "price": "double precision", "name": "text", "blob": "bytea",
                     "untyped": "text", "born": "date", "seen": "timestamp with time zone", "amount": "numeric",
                     "flag": "boolean", "doc": "jsonb"}
    assert _rows(target_cluster, target_db, f'SELECT "sel""ect", "order" FROM "{HOSTILE.replace(chr(34), chr(34) * 2)}" '
                                            'ORDER BY 1') == [("k'2", 2), ("k1", 1)]
    assert sorted(_rows(target_cluster, target_db, "SELECT a, b FROM loose"), key=str) == sorted(
        [("x", 1), ("x", 1), ("y", None)], key=str)
    keys = _rows(target_cluster, target_db, "SELECT conname, contype FROM pg_constraint WHERE conrelid IN "
                                            "('items'::regclass, 'child'::regclass) ORDER BY 1")
    assert ("items_pkey", "p") in keys and any(t == "f" for _n, t in keys)
    assert _rows(target_cluster, target_db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_items_name'")[0][0] == 1
    verdict = session.verify()
    assert verdict.ok, [t.to_dict() for t in verdict.tables if not t.ok]


def test_jsonb_layout_is_the_seed_encoding(sqlite_file: Path, target_cluster: Any, target_db: str) -> None:
    session = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db, layout="jsonb"))
    session.init()
    rows = dict(_rows(target_cluster, target_db, "SELECT id, data FROM items"))
    assert rows["1"] == {"id": 1, "qty": 5, "price": 1.5, "name": "plain", "untyped": None,
                         "blob": {"_type": "binary", "data": base64.b64encode(b"\xff\x00\xfe").decode()},
                         "born": "2024-02-29", "seen": "2024-02-29 13:14:15", "amount": 12.5, "flag": 1,
                         "doc": '{"a": [1, 2]}'}
    assert rows["2"]["price"] == "Infinity" and rows["2"]["blob"] == "text in a blob"
    columns = _rows(target_cluster, target_db, "SELECT column_name, data_type FROM information_schema.columns "
                                               "WHERE table_name = 'items' ORDER BY ordinal_position")
    assert columns == [("id", "text"), ("data", "jsonb"), ("_source_type", "text"),
                       ("_migrated_at", "timestamp without time zone")]
    assert {r[0] for r in _rows(target_cluster, target_db, "SELECT _source_type FROM items")} == {"sqlite"}
    indexes = {r[0] for r in _rows(target_cluster, target_db, "SELECT indexdef FROM pg_indexes WHERE tablename = 'items'")}
    assert any("USING gin (data)" in i for i in indexes) and any("(_migrated_at)" in i for i in indexes)
    # A table without a declared key takes the rowid as its id, as the seed does.
    assert sorted(r[0] for r in _rows(target_cluster, target_db, "SELECT id FROM loose")) == ["1", "2", "3"]
    assert session.verify().ok


def test_verify_names_differing_ids(sqlite_file: Path, target_cluster: Any, target_db: str) -> None:
    session = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db))
    session.init()
    target_cluster.execute("UPDATE items SET name = 'changed' WHERE id = 2; DELETE FROM items WHERE id = 3; "
                           "INSERT INTO items (id) VALUES (99)", dbname=target_db)
    report = session.verify()
    items = next(t for t in report.tables if t.table == "items")
    assert not report.ok and (items.different, items.missing, items.extra) == (["2"], ["3"], ["99"])


def test_refresh_applies_inserts_updates_deletes(sqlite_file: Path, target_cluster: Any, target_db: str) -> None:
    session = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db, refresh_every=1))
    session.init()
    conn = sqlite3.connect(sqlite_file)
    conn.executescript("UPDATE items SET name = 'renamed' WHERE id = 1; DELETE FROM items WHERE id = 3;"
                       "INSERT INTO items (id, name) VALUES (4, 'new'); INSERT INTO loose VALUES ('z', 9);")
    conn.commit()
    stop = threading.Event()
    seen: list[dict[str, Any]] = []

    def progress(summary: dict[str, Any]) -> None:
        seen.append(summary)
        stop.set()

    session.sync(stop=stop, on_progress=progress)
    assert seen and (seen[0]["inserted"], seen[0]["updated"], seen[0]["deleted"]) == (1, 1, 1)
    assert seen[0]["reloaded"] == ["loose"]
    assert _rows(target_cluster, target_db, "SELECT id, name FROM items ORDER BY id") == [
        (1, "renamed"), (2, "emoji 🐘 and NUL"), (4, "new")]
    assert session.verify().ok
    assert session.status().mode == "refresh"


def test_bad_input_changes_nothing(sqlite_file: Path, target_cluster: Any, target_db: str) -> None:
    before = sqlite_file.read_bytes()
    session = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db,
                                      filters={"items": "1=1); DROP TABLE items; --"}))
    report = session.validate()
    assert not report.ok and any(c.name == "selection" and "row filter" in c.observed for c in report.errors)
    bad_cast = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db, casts={"items.qty": "nosuchtype"}))
    assert any(c.name == "layout" and "nosuchtype" in c.observed for c in bad_cast.validate().errors)
    unknown = ForeignSession(plan_for(str(sqlite_file), target_cluster, target_db, include=("itemz",)))
    assert any("itemz" in c.observed for c in unknown.validate().errors)
    assert sqlite_file.read_bytes() == before
    assert target_cluster.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                                  dbname=target_db)[0][0] == 0


def test_a_value_that_does_not_fit_names_the_row(tmp_path: Path, target_cluster: Any, target_db: str) -> None:
    path = tmp_path / "bad.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, at DATETIME); INSERT INTO t VALUES (1, 'yesterday');")
    conn.close()
    session = ForeignSession(plan_for(str(path), target_cluster, target_db))
    with pytest.raises(InputError, match=r"t\.at: 'yesterday' does not fit timestamp") as caught:
        session.init()
    assert '"t.at" = "text"' in caught.value.remedy
    # The documented way out: an override to text, checked by the target server.
    fixed = ForeignSession(plan_for(str(path), target_cluster, target_db, casts={"t.at": "text"}, drop_existing=True,
                                    resume=False))
    fixed.init()
    assert target_cluster.execute("SELECT at FROM t", dbname=target_db) == [("yesterday",)]
    assert json.dumps(fixed.status().to_dict())


def test_an_interrupted_copy_resumes_per_table(tmp_path: Path, target_cluster: Any, target_db: str) -> None:
    from pgtide.core.infra.events import Cancelled, CancelToken, Log, TableCopied

    path = tmp_path / "three.db"
    conn = sqlite3.connect(path)
    for name in ("a", "b", "c"):
        conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(i, f"{name}{i}") for i in range(2000)])
    conn.commit()
    conn.close()
    cancel = CancelToken()
    copied: list[str] = []

    def stop_after_first(event: Any) -> None:
        if isinstance(event, TableCopied):
            copied.append(event.table)
            cancel.cancel()

    session = ForeignSession(plan_for(str(path), target_cluster, target_db, jobs=1))
    with pytest.raises(Cancelled):
        session.init(emit=stop_after_first, cancel=cancel)
    assert len(copied) == 1
    assert session.store.state(session.plan.database).value == "failed"
    logs: list[str] = []
    again = ForeignSession(plan_for(str(path), target_cluster, target_db, jobs=1))
    again.init(emit=lambda e: logs.append(e.text) if isinstance(e, Log) else None)
    assert f"{copied[0]}: copied by an earlier run, kept" in logs
    for name in ("a", "b", "c"):
        assert target_cluster.execute(f"SELECT count(*), count(DISTINCT id) FROM {name}", dbname=target_db) == [
            (2000, 2000)]
    assert again.verify().ok


def test_a_filtered_parent_warns_and_leaves_out_its_foreign_key(tmp_path: Path, target_cluster: Any,
                                                                target_db: str) -> None:
    from pgtide.core.infra.events import Log

    path = tmp_path / "fk.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (id INTEGER PRIMARY KEY, "
                       "parent_id INTEGER REFERENCES parent(id)); INSERT INTO parent VALUES (1), (2), (3);"
                       "INSERT INTO child VALUES (10, 1), (11, 3);")
    conn.close()
    session = ForeignSession(plan_for(str(path), target_cluster, target_db, filters={"parent": "id >= 2"}))
    report = session.validate()
    check = next(c for c in report.checks if c.name == "foreign keys")
    assert report.ok and check.status == "warning" and "child → parent" in check.observed
    logs: list[str] = []
    session.init(emit=lambda e: logs.append(e.text) if isinstance(e, Log) else None)
    assert any("child: a foreign key was not created" in text and "(parent_id)=(1)" in text for text in logs)
    assert target_cluster.execute("SELECT count(*) FROM child", dbname=target_db) == [(2,)]
    assert target_cluster.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", dbname=target_db) == [(0,)]


def test_a_key_the_target_cannot_build_is_named(tmp_path: Path, target_cluster: Any, target_db: str) -> None:
    from pgtide.core.infra.errors import MigrationFailed

    path = tmp_path / "nullkey.db"
    conn = sqlite3.connect(path)
    # SQLite lets a non-INTEGER primary key hold NULL (a legacy quirk it keeps on purpose).
    conn.executescript("CREATE TABLE t (code TEXT PRIMARY KEY, v INT); INSERT INTO t VALUES (NULL, 1), ('a', 2);")
    conn.close()
    session = ForeignSession(plan_for(str(path), target_cluster, target_db))
    with pytest.raises(MigrationFailed, match=r"t: its key or unique index cannot be built") as caught:
        session.init()
    assert "--layout jsonb" in caught.value.remedy
    assert target_cluster.execute("SELECT count(*) FROM t", dbname=target_db) == [(2,)]


def test_a_rerun_with_another_filter_or_layout_copies_that_table_again(sqlite_file: Path, target_cluster: Any,
                                                                      target_db: str) -> None:
    url = str(sqlite_file)
    ForeignSession(plan_for(url, target_cluster, target_db, filters={"items": "id = 1"})).init()
    assert target_cluster.execute("SELECT count(*) FROM items", dbname=target_db) == [(1,)]
    again = ForeignSession(plan_for(url, target_cluster, target_db))
    again.init()
    assert target_cluster.execute("SELECT count(*) FROM items", dbname=target_db) == [(3,)]
    assert again.verify().ok
    jsonb = ForeignSession(plan_for(url, target_cluster, target_db, layout="jsonb"))
    jsonb.init()
    assert target_cluster.execute("SELECT count(*), min(_source_type) FROM items", dbname=target_db) == [(3, "sqlite")]
    assert jsonb.verify().ok


@pytest.mark.parametrize("layout", ["typed", "jsonb"])
def test_nul_backslashes_and_decimals_land_as_the_source_means_them(layout: str, tmp_path: Path, target_cluster: Any,
                                                                    target_db: str) -> None:
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, t TEXT, d DECIMAL(10,2), j JSON)")
    conn.execute("INSERT INTO e VALUES (1, ?, 123.45, ?)", ("a\x00b", '{"k": "x\\u0000y"}'))
    conn.execute("INSERT INTO e VALUES (2, ?, 0.1, ?)", ("back\\u0000slash", '{"k": "back\\\\u0000slash"}'))
    conn.commit()
    conn.close()
    session = ForeignSession(plan_for(str(path), target_cluster, target_db, layout=layout))
    session.init()
    if layout == "typed":
        rows = target_cluster.execute("SELECT t, d::text, j FROM e ORDER BY id", dbname=target_db)
        assert rows == [("ab", "123.45", {"k": "xy"}), ("back\\u0000slash", "0.1", {"k": "back\\u0000slash"})]
    else:
        rows = target_cluster.execute("SELECT data FROM e ORDER BY id", dbname=target_db)
        assert rows[0][0]["t"] == "ab" and rows[1][0]["t"] == "back\\u0000slash"
        assert rows[0][0]["d"] == 123.45
    assert session.verify().ok
