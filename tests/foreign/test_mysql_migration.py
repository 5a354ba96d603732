"""MariaDB into PostgreSQL through the session: both layouts, every common type, binlog sync
under a concurrent writer, and what is refused when the binlog cannot be streamed."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from foreign_support import plan_for
from mariadb_harness import mariadb_db, mariadb_factory, mariadb_server  # noqa: F401

from pgtide.core.foreign.session import ForeignSession
from pgtide.core.infra.errors import PgtideError

TYPES = """
CREATE TABLE kinds (
    id INT AUTO_INCREMENT PRIMARY KEY,
    flag TINYINT(1), small TINYINT, big_u BIGINT UNSIGNED, amount DECIMAL(30,10), ratio DOUBLE, f FLOAT,
    born DATE, seen DATETIME(6), stamp TIMESTAMP NULL, dur TIME, yr YEAR,
    name VARCHAR(40), body TEXT, raw VARBINARY(16), bits BIT(10), onoff BIT(1),
    mood ENUM('happy','it''s ok','sad'), tags SET('a','b','c'), doc JSON,
    UNIQUE KEY kinds_name (name)
) CHARACTER SET utf8mb4;
"""


def _load(server: Any, db: str) -> None:
    server.execute(TYPES, db=db)
    server.execute("SET SESSION sql_mode = ''", db=db)
    conn = server.connect(db)
    with conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("""INSERT INTO kinds (flag, small, big_u, amount, ratio, f, born, seen, stamp, dur, yr, name, body,
                       raw, bits, onoff, mood, tags, doc) VALUES
            (1, -5, 18446744073709551615, 12345678901234567890.0123456789, 1.5, 0.1, '2024-02-29',
             '2024-02-29 13:14:15.123456', '2024-01-01 00:00:00', '-838:59:59', 2024, 'one', 'emoji 🐘', X'FF00FE',
             b'1010101010', b'1', 'it''s ok', 'a,c', '{"k": [1, 2]}'),
            (0, 0, 0, 0, 0, 0, '0000-00-00', '0000-00-00 00:00:00', NULL, '12:30:00', 1999, 'two', '', '', b'0', b'0',
             'sad', '', NULL)""")
        cur.execute("CREATE TABLE `we``ird t` (`sel``ect` VARCHAR(10) PRIMARY KEY, `order` INT)")
        cur.execute("INSERT INTO `we``ird t` VALUES ('k1', 1), ('k''2', 2)")
        cur.execute("CREATE TABLE nokey (a INT, b VARCHAR(5))")
        cur.execute("INSERT INTO nokey VALUES (1, 'x'), (1, 'x')")


def test_typed_layout(mariadb_server: Any, mariadb_db: str, target_cluster: Any, target_db: str) -> None:
    _load(mariadb_server, mariadb_db)
    session = ForeignSession(plan_for(mariadb_server.url(mariadb_db, with_password=True), target_cluster, target_db,
                                      casts={"kinds.dur": "interval"}))
    report = session.validate()
    assert report.ok, list(report.errors)
    session.init()
    row = target_cluster.execute("SELECT flag, small, big_u, amount, ratio, f, born, seen, stamp, dur, yr, name, body, "
                                 "raw, bits, onoff, mood::text, tags::text[], doc FROM kinds ORDER BY id",
                                 dbname=target_db)
    assert row[0] == (True, -5, Decimal("18446744073709551615"), Decimal("12345678901234567890.0123456789"), 1.5,
                      pytest.approx(0.1, rel=1e-6), dt.date(2024, 2, 29),
                      dt.datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=dt.UTC),
                      dt.datetime(2024, 1, 1, tzinfo=dt.UTC), -dt.timedelta(hours=838, minutes=59, seconds=59), 2024,
                      "one", "emoji 🐘", b"\xff\x00\xfe", "1010101010", True, "it's ok", ["a", "c"], {"k": [1, 2]})
    # Zero dates become NULL, as pgloader does.
    assert row[1][6:8] == (None, None) and row[1][16:18] == ("sad", [])
    types = dict(target_cluster.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                                        "WHERE attrelid = 'kinds'::regclass AND attnum > 0", dbname=target_db))
    assert (types["flag"], types["small"], types["big_u"], types["amount"], types["seen"], types["dur"]) == (
        "boolean", "smallint", "numeric(20,0)", "numeric(30,10)", "timestamp with time zone", "interval")
    assert types["tags"] == "kinds_tags[]" and types["bits"] == "bit varying(10)"
    # auto_increment became an identity whose next value is past the copied rows.
    target_cluster.execute("INSERT INTO kinds (name) VALUES ('three')", dbname=target_db)
    assert target_cluster.execute("SELECT id FROM kinds WHERE name = 'three'", dbname=target_db) == [(3,)]
    target_cluster.execute("DELETE FROM kinds WHERE name = 'three'", dbname=target_db)
    assert target_cluster.execute('SELECT "sel`ect" FROM "we`ird t" ORDER BY 1', dbname=target_db) == [
        ("k'2",), ("k1",)]
    assert target_cluster.execute("SELECT count(*) FROM nokey", dbname=target_db) == [(2,)]
    report = session.verify()
    assert report.ok, [t.to_dict() for t in report.tables if not t.ok]


def test_jsonb_layout(mariadb_server: Any, mariadb_db: str, target_cluster: Any, target_db: str) -> None:
    _load(mariadb_server, mariadb_db)
    session = ForeignSession(plan_for(mariadb_server.url(mariadb_db, with_password=True), target_cluster, target_db,
                                      layout="jsonb"))
    session.init()
    data = dict(target_cluster.execute("SELECT id, data FROM kinds", dbname=target_db))
    first = data["1"]
    assert first["big_u"] == 18446744073709551615 and first["amount"] == "12345678901234567890.0123456789"
    assert first["seen"] == {"_type": "datetime", "value": "2024-02-29T13:14:15.123456Z"}
    assert first["dur"] == {"_type": "time", "value": "-838:59:59"}
    assert first["raw"] == {"_type": "binary", "data": "/wD+"} and first["body"] == "emoji 🐘"
    assert first["tags"] == "a,c" and first["mood"] == "it's ok"
    assert data["2"]["born"] == "0000-00-00"
    assert {r[0] for r in target_cluster.execute("SELECT _source_type FROM kinds", dbname=target_db)} == {"mysql"}
    assert session.verify().ok


def test_binlog_sync_under_a_writer(mariadb_server: Any, mariadb_db: str, target_cluster: Any, target_db: str) -> None:
    mariadb_server.execute("CREATE TABLE acct (id INT PRIMARY KEY, n INT, note VARCHAR(20))", db=mariadb_db)
    mariadb_server.execute("INSERT INTO acct VALUES " + ", ".join(f"({i}, {i}, 'seed')" for i in range(500)),
                           db=mariadb_db)
    session = ForeignSession(plan_for(mariadb_server.url(mariadb_db, with_password=True), target_cluster, target_db,
                                      jobs=2))
    writing = threading.Event()
    writing.set()
    failures: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(11)
        try:
            conn = mariadb_server.connect(mariadb_db, autocommit=False)
            with conn, conn.cursor() as cur:
                next_id = 1000
                while writing.is_set():
                    for _ in range(rng.randrange(1, 4)):  # transactions of a few changes
                        op = rng.random()
                        if op < 0.4:
                            cur.execute("INSERT INTO acct VALUES (%s, %s, 'new')", (next_id, next_id))
                            next_id += 1
                        elif op < 0.8:
                            cur.execute("UPDATE acct SET n = n + 1, note = 'upd' WHERE id = %s", (rng.randrange(500),))
                        else:
                            cur.execute("DELETE FROM acct WHERE id = %s", (rng.randrange(500),))
                    conn.commit()
                    time.sleep(0.002)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    stop = threading.Event()
    sync: threading.Thread | None = None
    try:
        session.init()
        sync = threading.Thread(target=session.sync, kwargs={"stop": stop})
        sync.start()
        time.sleep(1.5)
    finally:
        writing.clear()
        thread.join()
    assert not failures
    try:
        expected = dict(mariadb_server.execute("SELECT id, n FROM acct", db=mariadb_db))
        deadline = time.monotonic() + 30
        got: dict[Any, Any] = {}
        while time.monotonic() < deadline:
            got = dict(target_cluster.execute("SELECT id, n FROM acct", dbname=target_db))
            if got == expected:
                break
            time.sleep(0.3)
        assert got == expected
        assert session.verify().ok
        status = session.status()
        assert status.position and ":" in status.position
    finally:
        stop.set()
        if sync is not None:
            sync.join(timeout=30)
            assert not sync.is_alive()


def test_binlog_statement_format_is_refused_for_sync(mariadb_factory: Any, target_cluster: Any,
                                                     target_db: str) -> None:
    server = mariadb_factory(binlog_format="STATEMENT")
    db = server.create_database()
    server.execute("CREATE TABLE t (id INT PRIMARY KEY)", db=db)
    session = ForeignSession(plan_for(server.url(db, with_password=True), target_cluster, target_db))
    report = session.validate()
    capture = next(c for c in report.checks if c.name == "change capture")
    assert report.ok and capture.status == "warning" and "binlog_format" in capture.observed
    assert "ROW" in capture.remedy
    session.init()  # one-shot still offered
    with pytest.raises(PgtideError, match="binlog_format"):
        session.sync(stop=threading.Event())


def test_wrong_password_and_unreachable(mariadb_server: Any, mariadb_db: str, target_cluster: Any,
                                        target_db: str) -> None:
    url = mariadb_server.url(mariadb_db).replace("mariadb://pgtide@", "mariadb://pgtide:not-the-password@")
    report = ForeignSession(plan_for(url, target_cluster, target_db)).validate()
    source = next(c for c in report.checks if c.name == "source")
    assert source.status == "error" and "not-the-password" not in source.observed + source.remedy
    started = time.monotonic()
    report = ForeignSession(plan_for("mysql://pgtide:x@127.0.0.1:1/db", target_cluster, target_db)).validate()
    assert next(c for c in report.checks if c.name == "source").status == "error"
    assert time.monotonic() - started < 15


def test_validate_changes_nothing_and_names_an_unsupported_column(mariadb_server: Any, mariadb_db: str,
                                                                  target_cluster: Any, target_db: str) -> None:
    mariadb_server.execute("CREATE TABLE places (id INT PRIMARY KEY, spot POINT)", db=mariadb_db)
    mariadb_server.execute("INSERT INTO places VALUES (1, POINT(1, 2))", db=mariadb_db)

    def server_state() -> tuple[Any, ...]:
        return (mariadb_server.execute("SHOW MASTER STATUS"),
                mariadb_server.execute("SELECT TABLE_NAME, UPDATE_TIME, TABLE_ROWS FROM information_schema.TABLES "
                                       "WHERE TABLE_SCHEMA = %s ORDER BY 1", (mariadb_db,)),
                target_cluster.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                                       dbname=target_db))

    before = server_state()
    url = mariadb_server.url(mariadb_db, with_password=True)
    report = ForeignSession(plan_for(url, target_cluster, target_db)).validate()
    layout = next(c for c in report.checks if c.name == "layout")
    assert layout.status == "error" and "places.spot" in layout.observed and "point" in layout.observed.lower()
    assert '"places.spot" = "text"' in layout.remedy
    assert server_state() == before
    # The documented way out: a cast the target parses; the WKB bytes land as bytea.
    session = ForeignSession(plan_for(url, target_cluster, target_db, casts={"places.spot": "bytea"}))
    assert session.validate().ok
    session.init()
    (spot,) = target_cluster.execute("SELECT spot FROM places", dbname=target_db)[0]
    assert isinstance(spot, bytes) and len(spot) == 25  # SRID + WKB point
    assert session.verify().ok


def test_keyset_batches_keep_percent_signs_and_key_values_as_parameters(mariadb_server: Any, mariadb_db: str) -> None:
    from pgtide.core.foreign.endpoint import ForeignEndpoint
    from pgtide.core.foreign.mysql import open_mysql

    mariadb_server.execute("CREATE TABLE `pct%s%tbl` (k VARCHAR(20), n INT, name VARCHAR(20), PRIMARY KEY (k, n))",
                           db=mariadb_db)
    rows = [(f"k'{i % 3}\\", i, "a%s" if i % 2 else "b") for i in range(12)]
    conn = mariadb_server.connect(mariadb_db)
    with conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO `pct%%s%%tbl` VALUES (%s, %s, %s)", rows)
    source = open_mysql(ForeignEndpoint.parse(mariadb_server.url(mariadb_db, with_password=True)))
    try:
        table = next(t for t in source.tables() if t.name == "pct%s%tbl")
        where = source.check_filter(table, "name LIKE '%\\%s' OR n = 0")
        with source.snapshot() as snapshot:
            got = [row for batch in snapshot.rows(table, where=where, batch=2) for row in batch]
    finally:
        source.close()
    assert got == sorted(r for r in rows if r[2] == "a%s" or r[1] == 0)


def test_a_remembered_password_comes_from_the_keyring(mariadb_server: Any, mariadb_db: str, target_cluster: Any,
                                                      target_db: str, use_keyring: Any,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from keyring_support import MemoryKeyring

    from pgtide.app.cli import main
    from pgtide.core.infra import paths

    memory = use_keyring(MemoryKeyring())
    monkeypatch.delenv("PGTIDE_SOURCE_PASSWORD", raising=False)
    mariadb_server.execute("CREATE TABLE t (id INT PRIMARY KEY)", db=mariadb_db)
    url = mariadb_server.url(mariadb_db, with_password=True)
    assert main(["profile", "save", "maria", "--source", url, "--target", target_cluster.url(target_db),
                 "--remember-password"]) == 0
    saved = (paths.profiles_dir() / "maria.toml").read_text()
    assert mariadb_server.password not in saved and "mariadb://pgtide@" in saved
    assert list(memory.store.values()) == [mariadb_server.password]
    capsys.readouterr()
    assert main(["validate", "--profile", "maria"]) == 0
    out = capsys.readouterr()
    assert "ready" in out.out and mariadb_server.password not in out.out + out.err
