"""The MySQL/MariaDB source adapter against real MariaDB servers (tests/mariadb_harness.py).

Values are checked field by field, both as the snapshot reads them (with every installed
driver) and as the binlog reader decodes them: the two must be equal for the same data.
"""

from __future__ import annotations

import datetime as dt
import queue
import random
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from mariadb_harness import MariaDBServer, mariadb_db, mariadb_factory, mariadb_server, quote_ident  # noqa: F401

from pgtide.core.foreign.endpoint import ForeignEndpoint
from pgtide.core.foreign.mysql import MySQLSource, SourceSchemaChanged, open_mysql
from pgtide.core.foreign.source import Change, SourceTable
from pgtide.core.infra.errors import ConnectError, EnvironmentProblem, InputError, MigrationFailed
from pgtide.core.infra.localcluster import free_port

try:
    import MySQLdb  # noqa: F401

    DRIVERS = [True, False]
except ImportError:
    DRIVERS = [False]
DRIVER_IDS = ["mysqlclient" if fast else "pymysql" for fast in DRIVERS]

TYPES_DDL = """
CREATE TABLE types (
  id INT NOT NULL PRIMARY KEY,
  flag TINYINT(1), ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT,
  mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT(20) UNSIGNED,
  dec30 DECIMAL(30,10), fl FLOAT, db DOUBLE,
  d DATE, dt6 DATETIME(6), dt0 DATETIME, ts TIMESTAMP NULL DEFAULT NULL, ts3 TIMESTAMP(3) NULL DEFAULT NULL,
  tm TIME, tm6 TIME(6), yr YEAR,
  ch CHAR(4), vc VARCHAR(40) NOT NULL DEFAULT 'it''s', tx TEXT, lt LONGTEXT CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(16), bl BLOB,
  b1 BIT(1), b10 BIT(10),
  en ENUM('small', 'it''s', 'a,b', 'back\\\\slash'), st SET('x', 'y', 'z'),
  js JSON
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

# (SQL literals inserted with sql_mode='', the values every read must give back)
TYPE_ROWS: list[tuple[str, tuple[Any, ...]]] = [
    ("1, 1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, "
     "18446744073709551615, 12345678901234567890.0123456789, 0.1, 1e300, "
     "'2024-02-29', '2024-02-29 23:59:59.123456', '1000-01-01 00:00:00', '2038-01-19 03:14:07', "
     "'2001-02-03 04:05:06.789', '-838:59:59', '123:45:06.000007', 2155, "
     "'ab', 'héllo 😀 wörld', 'text 😀\\n\\ttab', 'café', x'00ff0100', x'80ff00fe', x'c328ff00', "
     "b'1', b'1010101010', 'it''s', 'x,z', '{\"a\": [1, 2.5, \"ü\"], \"b\": null}'",
     (1, 1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
      18446744073709551615, Decimal("12345678901234567890.0123456789"), 0.1, 1e300,
      dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 23, 59, 59, 123456), dt.datetime(1000, 1, 1),
      dt.datetime(2038, 1, 19, 3, 14, 7), dt.datetime(2001, 2, 3, 4, 5, 6, 789000),
      -dt.timedelta(hours=838, minutes=59, seconds=59), dt.timedelta(hours=123, minutes=45, seconds=6, microseconds=7),
      2155, "ab", "héllo 😀 wörld", "text 😀\n\ttab", "café", b"\x00\xff\x01\x00", b"\x80\xff\x00\xfe",
      b"\xc3(\xff\x00", b"\x01", b"\x02\xaa", "it's", "x,z", '{"a": [1, 2.5, "ü"], "b": null}')),
    # Zero and partial-zero dates, negative fractions, empty strings and sets, zero-padded binary.
    ("2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.0000000001, -1.5, -2.25, "
     "'0000-00-00', '0000-00-00 00:00:00', '2020-00-00 00:00:00', '0000-00-00 00:00:00', "
     "'0000-00-00 00:00:00', '-00:00:01', '-00:00:00.5', 0, "
     "'', '', '', '', x'00', x'', x'', b'0', b'0', 'a,b', '', '[]'",
     (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Decimal("-0.0000000001"), -1.5, -2.25,
      "0000-00-00", "0000-00-00 00:00:00.000000", "2020-00-00 00:00:00", "0000-00-00 00:00:00",
      "0000-00-00 00:00:00.000", -dt.timedelta(seconds=1), -dt.timedelta(microseconds=500000), 0,
      "", "", "", "", b"\x00\x00\x00\x00", b"", b"", b"\x00", b"\x00\x00", "a,b", "", "[]")),
    ("3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
     "NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
     "'back\\\\slash', 'x,y,z', NULL",
     (3, *([None] * 23), "x", *([None] * 7), "back\\slash", "x,y,z", None)),
]

HOSTILE_TABLE = "we`ird \"na'me\" ünï 表 select"
HOSTILE_COLUMNS = ("id", "col`tick", "col\"dq", "col'sq", "with space", "ünïcode 表", "select")


def _insert_sql(table: str, values: str, columns: Sequence[str] | None = None) -> str:
    names = "" if columns is None else " (" + ", ".join(quote_ident(c) for c in columns) + ")"
    return f"INSERT INTO {quote_ident(table)}{names} VALUES ({values})"


def _execute_lax(server: MariaDBServer, db: str, statements: Sequence[str]) -> None:
    """Run statements with sql_mode='' (zero dates are refused by the default strict mode)."""
    conn = server.connect(db)
    with conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = '', SESSION time_zone = '+00:00'")
        for statement in statements:
            cur.execute(statement)


def _source(server: MariaDBServer, db: str, *, fast: bool = True, user: str | None = None,
            password: str | None = None) -> MySQLSource:
    endpoint = ForeignEndpoint.parse(server.url(db, user=user or "pgtide"))
    return MySQLSource(endpoint.with_password(server.password if password is None else password),
                       prefer_fast_driver=fast)


def _table(source: MySQLSource, name: str) -> SourceTable:
    return next(t for t in source.tables() if t.name == name)


def _all_rows(reader: Any, table: SourceTable, **kwargs: Any) -> list[tuple[Any, ...]]:
    return [row for batch in reader.rows(table, **kwargs) for row in batch]


def _binlog_end(server: MariaDBServer) -> tuple[str, int]:
    row = server.execute("SHOW MASTER STATUS")[0]
    return str(row[0]), int(row[1])


def _past(position: str | None, end: tuple[str, int]) -> bool:
    if position is None:
        return False
    file, _, pos = position.rpartition(":")
    return (file, int(pos)) >= end


def _collect(source: MySQLSource, tables: Sequence[SourceTable], start: str, until: tuple[str, int],
             timeout: float = 20) -> list[Change]:
    """Every change from ``start`` up to the binlog end ``until``; stops the stream there."""
    out: queue.Queue[Change | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            for change in source.changes(tables, start, stop):
                out.put(change)
        except BaseException as exc:
            out.put(exc)
        out.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    changes: list[Change] = []
    deadline = time.monotonic() + timeout
    try:
        if _past(start, until):
            return changes
        while time.monotonic() < deadline:
            try:
                item = out.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            changes.append(item)
            if _past(item.position, until):
                break
        else:
            raise AssertionError(f"the stream did not reach {until} in {timeout}s: {len(changes)} changes")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive(), "changes() did not return after stop"
    return changes


def _replay(rows: dict[Any, tuple[Any, ...]], changes: Sequence[Change], key: int = 0) -> None:
    """Apply changes strictly: an insert of a present key or a change of a missing one fails."""
    for change in changes:
        if not change.table:
            continue  # a checkpoint: a position only
        if change.op == "insert":
            assert change.row[key] not in rows, f"insert of a row already there: {change}"
            rows[change.row[key]] = change.row
        elif change.op == "update":
            assert change.before is not None
            assert rows.pop(change.before[key]) == change.before, f"update of a row not as it was: {change}"
            rows[change.row[key]] = change.row
        else:
            assert rows.pop(change.row[key]) == change.row, f"delete of a row not as it was: {change}"


def _assert_rows_equal(got: Sequence[tuple[Any, ...]], expected: Sequence[tuple[Any, ...]],
                       columns: Sequence[str]) -> None:
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        for name, value, wanted in zip(columns, row, want, strict=True):
            assert type(value) is type(wanted) and value == wanted, (row[0], name, value, wanted)


# -- catalog ---------------------------------------------------------------------------------------


def test_discovery_reports_every_column_fact(mariadb_server: MariaDBServer, mariadb_db: str) -> None:
    mariadb_server.execute(TYPES_DDL, db=mariadb_db)
    mariadb_server.execute("CREATE TABLE parent (code VARCHAR(10) NOT NULL, n INT NOT NULL, Id INT, "
                           "UNIQUE KEY u_code (code, n), KEY pfx (code(3)), KEY k_n (n)) ENGINE=InnoDB", db=mariadb_db)
    mariadb_server.execute(
        "CREATE TABLE child (ID BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(10), n INT, note VARCHAR(5) DEFAULT 'x', "
        "CONSTRAINT fk_parent FOREIGN KEY (code, n) REFERENCES parent (code, n) ON DELETE CASCADE ON UPDATE SET NULL)",
        db=mariadb_db)
    mariadb_server.execute("CREATE TABLE keyless (a INT, b TEXT) ENGINE=MyISAM", db=mariadb_db)
    mariadb_server.execute("CREATE VIEW v_types AS SELECT id FROM types", db=mariadb_db)
    source = _source(mariadb_server, mariadb_db)
    try:
        tables = {t.name: t for t in source.tables()}
        assert set(tables) == {"types", "parent", "child", "keyless"}  # the view is not a table
        types = tables["types"]
        col = types.column
        assert types.key == ("id",) and types.id_column == "id" and not types.rows_exact
        assert types.size_bytes > 0
        assert (col("flag").base, col("flag").length, col("flag").source_type) == ("tinyint", 1, "tinyint(1)")
        assert col("bu").unsigned and col("bu").base == "bigint" and col("bu").source_type == "bigint(20) unsigned"
        assert not col("bi").unsigned
        assert (col("dec30").length, col("dec30").scale) == (30, 10)
        assert (col("b1").base, col("b1").length, col("b10").length) == ("bit", 1, 10)
        assert (col("vc").length, col("vc").nullable, col("vc").default) == (40, False, "'it''s'")
        assert col("id").nullable is False and col("tx").nullable is True
        assert col("en").values == ("small", "it's", "a,b", "back\\slash")
        assert col("st").values == ("x", "y", "z")
        assert col("js").base == "json"  # MariaDB's JSON: LONGTEXT with a json_valid() check
        assert (col("dt6").base, col("dt6").scale, col("ts3").scale) == ("datetime", 6, 3)
        assert col("ch").length == 4 and col("yr").base == "year"
        parent = tables["parent"]
        # No primary key: the unique key whose columns are all NOT NULL; the prefix index is skipped.
        assert parent.key == ("code", "n") and parent.id_column == "Id"
        assert {i.name: (i.columns, i.unique) for i in parent.indexes} == {
            "u_code": (("code", "n"), True), "k_n": (("n",), False)}
        child = tables["child"]
        assert child.id_column == "ID" and child.column("ID").auto_increment
        assert child.column("note").default == "'x'"
        (fk,) = child.foreign_keys
        assert (fk.name, fk.columns, fk.ref_table, fk.ref_columns, fk.on_delete, fk.on_update) == (
            "fk_parent", ("code", "n"), "parent", ("code", "n"), "CASCADE", "SET NULL")
        # A composite key: key order, and resuming strictly past a key tuple.
        mariadb_server.execute("INSERT INTO parent VALUES ('b', 2, 1), ('a', 9, 2), ('b', 1, 3), ('c', 0, 4), "
                               "('b', 3, 5)", db=mariadb_db)
        with source.snapshot() as reader:
            assert [r[:2] for r in _all_rows(reader, parent, batch=2)] == [
                ("a", 9), ("b", 1), ("b", 2), ("b", 3), ("c", 0)]
            assert [r[:2] for r in _all_rows(reader, parent, after=("b", 1), batch=2)] == [("b", 2), ("b", 3), ("c", 0)]
        keyless = tables["keyless"]
        assert keyless.key == () and keyless.id_column is None and keyless.rows_exact
        assert "keyless" in source.consistency() and "START TRANSACTION WITH CONSISTENT SNAPSHOT" in source.consistency()
    finally:
        source.close()


# -- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", DRIVERS, ids=DRIVER_IDS)
def test_values_read_back_equal_from_snapshot_and_binlog(mariadb_server: MariaDBServer, mariadb_db: str,
                                                         fast: bool) -> None:
    mariadb_server.execute(TYPES_DDL, db=mariadb_db)
    _execute_lax(mariadb_server, mariadb_db, [_insert_sql("types", sql) for sql, _ in TYPE_ROWS])
    source = _source(mariadb_server, mariadb_db, fast=fast)
    try:
        assert source.driver_name == ("mysqlclient" if fast else "PyMySQL")
        table = _table(source, "types")
        with source.snapshot() as reader:
            assert reader.count(table) == len(TYPE_ROWS)
            snapshot_rows = _all_rows(reader, table, batch=2)
            start = reader.position
        _assert_rows_equal(snapshot_rows, [want for _, want in TYPE_ROWS], table.column_names)
        # The same values written after the snapshot, then updated and deleted: the binlog
        # reader must decode them to exactly what the snapshot read.
        statements = [_insert_sql("types", str(100 + i) + sql[sql.index(","):]) for i, (sql, _) in enumerate(TYPE_ROWS, 1)]
        statements += ["UPDATE types SET vc = 'changed' WHERE id = 101", "DELETE FROM types WHERE id = 102"]
        _execute_lax(mariadb_server, mariadb_db, statements)
        assert start is not None
        changes = _collect(source, [table], start, _binlog_end(mariadb_server))
        inserted = [c.row for c in changes if c.op == "insert"]
        _assert_rows_equal(inserted, [(100 + i, *want[1:]) for i, (_, want) in enumerate(TYPE_ROWS, 1)],
                           table.column_names)
        (update,) = [c for c in changes if c.op == "update"]
        assert update.before == inserted[0] and update.row == (101, *inserted[0][1:24], "changed", *inserted[0][25:])
        (delete,) = [c for c in changes if c.op == "delete"]
        assert delete.row == inserted[1]
        assert all(c.position is not None and c.committed_at for c in changes)  # autocommit: one per transaction
    finally:
        source.close()


RANDOM_DDL = """
CREATE TABLE rnd (
  id INT PRIMARY KEY, d180 DECIMAL(18,0), d99 DECIMAL(9,9), d6530 DECIMAL(65,30), du DECIMAL(5,2) UNSIGNED,
  t1 TIME(1), t3 TIME(3), t4 TIME(4), dt1 DATETIME(1), dt2 DATETIME(2), dt5 DATETIME(5), ts6 TIMESTAMP(6) NULL,
  ch CHAR(10), vl VARCHAR(300) CHARACTER SET latin1, v3 VARCHAR(100) CHARACTER SET utf8mb3, bn BINARY(6),
  b64 BIT(64), b9 BIT(9), st SET('m0','m1','m2','m3','m4','m5','m6','m7','m8','m9','m10','m11','m12'),
  tb TINYBLOB, mb MEDIUMBLOB, lt LONGTEXT, fl FLOAT, u8 TINYINT UNSIGNED, i24 MEDIUMINT, u24 MEDIUMINT UNSIGNED,
  y YEAR, d DATE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


def _random_row(rng: random.Random, key: int) -> tuple[Any, ...]:
    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    def sign() -> str:
        return rng.choice(["", "-"])

    def clock(fsp: int) -> str:
        frac = "." + digits(fsp) if fsp else ""
        return f"{sign()}{rng.randint(0, 838)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{frac}"

    def stamp(fsp: int, years: tuple[int, int] = (1000, 9999)) -> str:
        if rng.random() < 0.15:
            return "0000-00-00 00:00:00"
        frac = "." + digits(fsp) if fsp else ""
        return (f"{rng.randint(*years)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{frac}")

    text = "".join(rng.choice("aé€😀z \\'\"%_\n") for _ in range(rng.randint(0, 30)))
    return (
        key, sign() + digits(rng.randint(1, 18)), "0." + digits(9), f"{sign()}{digits(rng.randint(1, 35))}.{digits(30)}",
        f"{rng.randint(0, 999)}.{digits(2)}", clock(1), clock(3), clock(4), stamp(1), stamp(2), stamp(5),
        stamp(6, (1971, 2037)) if rng.random() < 0.9 else None,
        "".join(rng.choice("ab ") for _ in range(rng.randint(0, 9))).rstrip() + rng.choice(["", "x"]),
        "".join(rng.choice("aàéÿ¡~ ") for _ in range(rng.randint(0, 300))), "".join(rng.choice("aé€") for _ in range(rng.randint(0, 100))),
        bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 6))),
        rng.getrandbits(64), rng.getrandbits(9), ",".join(f"m{i}" for i in range(13) if rng.random() < 0.3),
        bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 255))),
        bytes(rng.randint(0, 255) for _ in range(rng.choice([0, 10, 70000]))),
        text * rng.choice([1, 3000]), rng.uniform(-1e6, 1e6), rng.randint(0, 255), rng.randint(-8388608, 8388607),
        rng.randint(0, 16777215), rng.choice([0, 1901, 2155, rng.randint(1901, 2155)]),
        rng.choice(["0000-00-00", "2020-00-00", f"{rng.randint(1000, 9999)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"]),
    )


def test_random_values_decode_from_the_binlog_as_the_snapshot_reads_them(mariadb_server: MariaDBServer,
                                                                          mariadb_db: str) -> None:
    mariadb_server.execute(RANDOM_DDL, db=mariadb_db)
    rng = random.Random(2026)
    conn = mariadb_server.connect(mariadb_db)
    with conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = '', SESSION time_zone = '+00:00'")
        rows = [_random_row(rng, key) for key in range(1, 41)]
        cur.executemany("INSERT INTO rnd VALUES (" + ", ".join(["%s"] * len(rows[0])) + ")", rows)
    source = _source(mariadb_server, mariadb_db)
    try:
        table = _table(source, "rnd")
        with source.snapshot() as reader:
            snapshot_rows = _all_rows(reader, table, batch=16)
            assert {type(v).__name__ for r in snapshot_rows for v in r[5:8]} == {"timedelta"}
            start = reader.position
        assert start is not None and len(snapshot_rows) == 40
        # The server copies its own stored values: the binlog then holds exactly what the snapshot read.
        names = ", ".join(quote_ident(c) for c in table.column_names[1:])
        mariadb_server.execute(f"INSERT INTO rnd SELECT id + 1000, {names} FROM rnd", db=mariadb_db)
        mariadb_server.execute("UPDATE rnd SET id = id + 2000 WHERE id <= 40", db=mariadb_db)
        changes = _collect(source, [table], start, _binlog_end(mariadb_server))
        # (Sorted: the server may log a big row in an event of its own, out of the SELECT's order.)
        inserted = sorted((c.row[0] - 1000, *c.row[1:]) for c in changes if c.op == "insert")
        _assert_rows_equal(inserted, snapshot_rows, table.column_names)
        befores = sorted((c.before for c in changes if c.op == "update" and c.before is not None), key=lambda r: r[0])
        assert befores == snapshot_rows
        assert sorted(c.row[0] for c in changes if c.op == "update") == [i + 2000 for i in range(1, 41)]
    finally:
        source.close()


@pytest.mark.parametrize("fast", DRIVERS, ids=DRIVER_IDS)
def test_hostile_names_and_keyless_table(mariadb_server: MariaDBServer, mariadb_db: str, fast: bool) -> None:
    columns = ", ".join(f"{quote_ident(c)} {'INT PRIMARY KEY' if c == 'id' else 'VARCHAR(20)'}" for c in HOSTILE_COLUMNS)
    mariadb_server.execute(f"CREATE TABLE {quote_ident(HOSTILE_TABLE)} ({columns})", db=mariadb_db)
    mariadb_server.execute("CREATE TABLE nokey (n INT, s VARCHAR(10))", db=mariadb_db)
    values = [(i, *(f"{c[:3]}-{i}'`\"" for c in HOSTILE_COLUMNS[1:])) for i in range(1, 8)]
    conn = mariadb_server.connect(mariadb_db)
    with conn, conn.cursor() as cur:
        placeholders = ", ".join(["%s"] * len(HOSTILE_COLUMNS))
        cur.executemany(f"INSERT INTO {quote_ident(HOSTILE_TABLE)} VALUES ({placeholders})", values)
        cur.executemany("INSERT INTO nokey VALUES (%s, %s)", [(3, "c"), (1, "a"), (2, "b"), (1, "a")])
    source = _source(mariadb_server, mariadb_db, fast=fast)
    try:
        hostile, nokey = _table(source, HOSTILE_TABLE), _table(source, "nokey")
        assert hostile.column_names == HOSTILE_COLUMNS and hostile.key == ("id",)
        where = source.check_filter(hostile, "`col``tick` <> 'x' AND `select` LIKE 'sel-%' AND id > 2")
        with source.snapshot() as reader:
            assert _all_rows(reader, hostile, batch=3) == values
            assert _all_rows(reader, hostile, where=where) == values[2:]
            assert reader.count(hostile, where=where) == 5
            assert _all_rows(reader, hostile, after=(4,), batch=2) == values[4:]
            assert sorted(_all_rows(reader, nokey, batch=3)) == [(1, "a"), (1, "a"), (2, "b"), (3, "c")]
            start = reader.position
        assert start is not None
        mariadb_server.execute(f"UPDATE {quote_ident(HOSTILE_TABLE)} SET {quote_ident('with space')} = 'new' "
                               "WHERE id = 1", db=mariadb_db)
        mariadb_server.execute("DELETE FROM nokey WHERE n = 1 LIMIT 1", db=mariadb_db)
        changes = _collect(source, [hostile, nokey], start, _binlog_end(mariadb_server))
        assert [(c.table, c.op) for c in changes] == [(HOSTILE_TABLE, "update"), ("nokey", "delete")]
        assert changes[0].row == (1, *values[0][1:4], "new", *values[0][5:])
        assert changes[1].row == (1, "a")  # a keyless delete carries the whole row
    finally:
        source.close()


# -- snapshot and changes ------------------------------------------------------------------------------


def _make_counter_table(server: MariaDBServer, db: str, rows: int) -> None:
    server.execute("CREATE TABLE items (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(30)) ENGINE=InnoDB", db=db)
    server.execute(f"INSERT INTO items SELECT seq, seq, CONCAT('s', seq) FROM seq_1_to_{rows}", db=db)


def test_write_after_snapshot_is_in_changes_exactly_once(mariadb_server: MariaDBServer, mariadb_db: str) -> None:
    _make_counter_table(mariadb_server, mariadb_db, 20)
    mariadb_server.execute("CREATE TABLE other (id INT PRIMARY KEY)", db=mariadb_db)
    source = _source(mariadb_server, mariadb_db)
    try:
        items = _table(source, "items")
        with source.snapshot() as reader:
            first = _all_rows(reader, items, batch=7)[:3]
            mariadb_server.execute("INSERT INTO other VALUES (1)", db=mariadb_db)  # not asked for
            mariadb_server.execute("INSERT INTO items VALUES (1000, 1, 'late')", db=mariadb_db)
            rows = _all_rows(reader, items, batch=7)
            assert reader.count(items) == 20
            start = reader.position
        assert [r[0] for r in rows] == list(range(1, 21)) and rows[:3] == first
        assert start is not None and start.startswith("binlog.")
        changes = _collect(source, [items], start, _binlog_end(mariadb_server))
        assert [(c.op, c.row) for c in changes] == [("insert", (1000, 1, "late"))]
        # One transaction of three changes: only its last one carries the resume position.
        conn = mariadb_server.connect(mariadb_db, autocommit=False)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO items VALUES (1001, 2, 'a'), (1002, 3, 'b')")
            cur.execute("INSERT INTO other VALUES (2)")
            cur.execute("DELETE FROM items WHERE id = 1")
            conn.commit()
        end = _binlog_end(mariadb_server)
        assert changes[-1].position is not None
        batch = _collect(source, [items], changes[-1].position, end)
        assert [(c.op, c.row[0]) for c in batch] == [("insert", 1001), ("insert", 1002), ("delete", 1)]
        assert [c.position for c in batch] == [None, None, f"{end[0]}:{end[1]}"]
    finally:
        source.close()


def test_changes_under_a_concurrent_writer_replay_to_the_final_table(mariadb_server: MariaDBServer,
                                                                   mariadb_db: str) -> None:
    _make_counter_table(mariadb_server, mariadb_db, 300)
    source = _source(mariadb_server, mariadb_db)
    rng = random.Random(13)
    started, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            conn = mariadb_server.connect(mariadb_db, autocommit=False)
            with conn, conn.cursor() as cur:
                next_id = 1000
                for n in range(80):
                    for _ in range(rng.randint(1, 4)):
                        action = rng.random()
                        if action < 0.4:
                            cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (next_id, n, f"w{n}"))
                            next_id += 1
                        elif action < 0.75:
                            cur.execute("UPDATE items SET v = v + 1, s = %s WHERE id = %s", (f"u{n}", rng.randint(1, 1100)))
                        elif action < 0.9:
                            cur.execute("DELETE FROM items WHERE id = %s", (rng.randint(1, 1100),))
                        else:  # a key change
                            cur.execute("UPDATE IGNORE items SET id = id + 5000 WHERE id = %s", (rng.randint(1, 300),))
                    if n % 9 == 0:
                        cur.execute("INSERT INTO items VALUES (%s, 0, 'rolled back')", (next_id + 100000,))
                        conn.rollback()
                    else:
                        conn.commit()
                    if n == 10:
                        started.set()
                    time.sleep(0.003)
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        items = _table(source, "items")
        started.wait(10)
        with source.snapshot() as reader:
            rows = {r[0]: r for r in _all_rows(reader, items, batch=50)}
            start = reader.position
        thread.join(60)
        assert not errors and done.is_set()
        assert start is not None
        changes = _collect(source, [items], start, _binlog_end(mariadb_server))
        assert len({c.position for c in changes if c.position}) > 5  # several transactions after the snapshot
        final = {r[0]: r for r in mariadb_server.execute("SELECT id, v, s FROM items", db=mariadb_db)}
        replayed = dict(rows)
        _replay(replayed, changes)
        assert replayed == final
        # Resuming from a transaction's position repeats nothing and misses nothing.
        ends = [i for i, c in enumerate(changes) if c.position]
        middle = ends[len(ends) // 2]
        mid_position = changes[middle].position
        assert mid_position is not None
        tail = _collect(source, [items], mid_position, _binlog_end(mariadb_server))
        assert tail == changes[middle + 1:]
    finally:
        thread.join(60)
        source.close()


def test_quiet_watched_tables_still_get_checkpoints(mariadb_server: MariaDBServer, mariadb_db: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import pgtide.core.foreign.mysql as mysql_module

    monkeypatch.setattr(mysql_module, "CHECKPOINT_SECONDS", 0.0)
    _make_counter_table(mariadb_server, mariadb_db, 2)
    mariadb_server.execute("CREATE TABLE busy (id INT PRIMARY KEY)", db=mariadb_db)
    source = _source(mariadb_server, mariadb_db)
    try:
        items = _table(source, "items")
        file, pos = _binlog_end(mariadb_server)
        for i in range(3):
            mariadb_server.execute("INSERT INTO busy VALUES (%s)", (i,), db=mariadb_db)
        end = _binlog_end(mariadb_server)
        changes = _collect(source, [items], f"{file}:{pos}", end)
        assert changes and all(c.table == "" and c.row == () and c.before is None for c in changes)
        assert changes[-1].position == f"{end[0]}:{end[1]}"
        # A checkpoint is a place to resume: what follows it arrives, nothing before it again.
        mariadb_server.execute("INSERT INTO items VALUES (50, 50, 'after')", db=mariadb_db)
        resumed = _collect(source, [items], f"{end[0]}:{end[1]}", _binlog_end(mariadb_server))
        assert [(c.table, c.op, c.row[0]) for c in resumed if c.table] == [("items", "insert", 50)]
    finally:
        source.close()


def test_stop_returns_promptly_when_idle(mariadb_server: MariaDBServer, mariadb_db: str) -> None:
    _make_counter_table(mariadb_server, mariadb_db, 1)
    source = _source(mariadb_server, mariadb_db)
    try:
        items = _table(source, "items")
        file, pos = _binlog_end(mariadb_server)
        stop = threading.Event()
        got: list[Change] = []
        thread = threading.Thread(target=lambda: got.extend(source.changes([items], f"{file}:{pos}", stop)))
        thread.start()
        time.sleep(1.2)  # idle: only heartbeats arrive
        assert thread.is_alive()
        stopped = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - stopped < 1.2
        assert got == []
        with pytest.raises(InputError):
            next(iter(source.changes([items], "not a position", stop)))
        with pytest.raises(MigrationFailed) as lost:  # purged, or never there
            next(iter(source.changes([items], "binlog.999999:4", stop)))
        assert lost.value.title == "Binlog position lost" and "init again" in lost.value.remedy
    finally:
        source.close()


@pytest.mark.parametrize("ddl", ["ALTER TABLE items ADD COLUMN extra INT", "TRUNCATE TABLE items",
                                 "RENAME TABLE items TO items_old", "DROP TABLE IF EXISTS nothing, `items`"])
def test_ddl_on_a_watched_table_stops_the_stream(mariadb_server: MariaDBServer, mariadb_db: str, ddl: str) -> None:
    _make_counter_table(mariadb_server, mariadb_db, 3)
    mariadb_server.execute("CREATE TABLE bystander (id INT PRIMARY KEY)", db=mariadb_db)
    source = _source(mariadb_server, mariadb_db)
    out: queue.Queue[Change | BaseException] = queue.Queue()
    stop = threading.Event()

    def run(start: str) -> None:
        try:
            for change in source.changes([items], start, stop):
                out.put(change)
        except BaseException as exc:
            out.put(exc)

    try:
        items = _table(source, "items")
        file, pos = _binlog_end(mariadb_server)
        thread = threading.Thread(target=run, args=(f"{file}:{pos}",), daemon=True)
        thread.start()
        mariadb_server.execute("ALTER TABLE bystander ADD COLUMN x INT", db=mariadb_db)  # not watched: no stop
        mariadb_server.execute("INSERT INTO items VALUES (10, 10, 'before ddl')", db=mariadb_db)
        first = out.get(timeout=10)
        assert isinstance(first, Change) and (first.op, first.row[0]) == ("insert", 10)
        mariadb_server.execute(ddl, db=mariadb_db)
        raised = out.get(timeout=10)
        assert isinstance(raised, SourceSchemaChanged), raised
        assert raised.table == "items" and "init" in raised.remedy and isinstance(raised, MigrationFailed)
        thread.join(5)
        # Started again from the same position: a changed catalog is caught before any read, a
        # TRUNCATE (same columns) when the stream reaches it.
        with pytest.raises(SourceSchemaChanged):
            for _change in source.changes([items], f"{file}:{pos}", stop):
                pass
    finally:
        stop.set()
        source.close()


# -- capture check ---------------------------------------------------------------------------------


def test_capture_check_accepts_row_binlog_and_refuses_the_rest(mariadb_server: MariaDBServer, mariadb_db: str,
                                                              mariadb_factory: Any) -> None:
    source = _source(mariadb_server, mariadb_db)
    try:
        check = source.capture_check()
        assert check.ok, check
        assert check.settings["binlog_format"] == "ROW" and "REPLICATION SLAVE" in check.settings["privileges"]
    finally:
        source.close()
    mariadb_server.execute("CREATE USER 'weak'@'%%' IDENTIFIED BY %s", (mariadb_server.password,))
    try:
        mariadb_server.execute(f"GRANT SELECT ON {quote_ident(mariadb_db)}.* TO 'weak'@'%'")
        weak = _source(mariadb_server, mariadb_db, user="weak")
        try:
            check = weak.capture_check()
            assert not check.ok and "REPLICATION SLAVE" in check.observed
            assert "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'weak'@'%'" in check.remedy
        finally:
            weak.close()
    finally:
        mariadb_server.execute("DROP USER 'weak'@'%'")
    for settings, observed, remedy in (
        ({"log_bin": False}, "log_bin is OFF", "log_bin=mysql-bin"),
        ({"binlog_format": "STATEMENT"}, "binlog_format is STATEMENT", "SET GLOBAL binlog_format = 'ROW'"),
    ):
        server = mariadb_factory(**settings)
        db = server.create_database()
        server.execute(f"GRANT ALL ON {quote_ident(db)}.* TO 'pgtide'@'%'")
        other = _source(server, db)
        try:
            check = other.capture_check()
            assert not check.ok and observed in check.observed, check
            assert remedy in check.remedy and "one-shot copies and --refresh-every work without it" in check.remedy
            with other.snapshot() as reader:  # a one-shot copy still works
                assert (reader.position is None) == (settings.get("log_bin") is False)
        finally:
            other.close()


def test_compressed_binlog_is_refused_not_misread(mariadb_factory: Any) -> None:
    server = mariadb_factory(settings={"log_bin_compress": "ON", "log_bin_compress_min_len": "10"})
    db = server.create_database()
    server.execute(f"GRANT ALL ON {quote_ident(db)}.* TO 'pgtide'@'%'")
    server.execute("CREATE TABLE items (id INT PRIMARY KEY, s TEXT)", db=db)
    source = _source(server, db)
    try:
        check = source.capture_check()
        assert not check.ok and "log_bin_compress is ON" in check.observed
        assert "SET GLOBAL log_bin_compress = OFF" in check.remedy
        items = _table(source, "items")
        with source.snapshot() as reader:
            start = reader.position
        assert start is not None
        server.execute("INSERT INTO items VALUES (1, REPEAT('x', 500))", db=db)
        with pytest.raises(MigrationFailed) as unreadable:
            for _change in source.changes([items], start, threading.Event()):
                pass
        assert unreadable.value.title == "Unreadable binlog"
    finally:
        source.close()


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", DRIVERS, ids=DRIVER_IDS)
def test_connect_failures_are_clear_and_never_show_the_password(mariadb_server: MariaDBServer,
                                                               mariadb_db: str, fast: bool) -> None:
    secret = "Sup3r-s3cret-passw0rd"
    with pytest.raises(ConnectError) as wrong:
        _source(mariadb_server, mariadb_db, password=secret, fast=fast)
    assert "refused the login" in wrong.value.cause and wrong.value.remedy
    assert secret not in str(wrong.value) and secret not in repr(wrong.value.to_dict())
    with pytest.raises(ConnectError) as unknown_user:
        _source(mariadb_server, mariadb_db, user="nobody", password=secret, fast=fast)
    assert "nobody" in unknown_user.value.cause and secret not in str(unknown_user.value)
    port = free_port()
    began = time.monotonic()
    with pytest.raises(ConnectError) as unreachable:
        MySQLSource(ForeignEndpoint.parse(f"mysql://pgtide:{secret}@127.0.0.1:{port}/{mariadb_db}"),
                    prefer_fast_driver=fast)
    assert time.monotonic() - began < 10.5
    assert f"127.0.0.1:{port}" in unreachable.value.cause and secret not in str(unreachable.value)
    with pytest.raises(InputError) as no_db:
        _source(mariadb_server, "no_such_db", fast=fast)
    assert "no_such_db" in no_db.value.cause
    source = open_mysql(ForeignEndpoint.parse(mariadb_server.url(mariadb_db)).with_password(mariadb_server.password))
    source.close()


def test_bad_filter_is_refused_with_the_servers_message(mariadb_server: MariaDBServer, mariadb_db: str) -> None:
    _make_counter_table(mariadb_server, mariadb_db, 5)
    source = _source(mariadb_server, mariadb_db)
    try:
        items = _table(source, "items")
        with pytest.raises(InputError) as unknown:
            source.check_filter(items, "no_such_column > 1")
        assert "no_such_column" in unknown.value.cause
        with pytest.raises(InputError) as syntax:
            source.check_filter(items, "v >")
        assert "SQL syntax" in syntax.value.cause
        for text, why in (("v > 1 /* open", "never closed"), ("v > 1 */", "never opened"), ("v\0", "NUL"),
                          ("v > 1) OR (1", "did not open"), ("'abc", "never closed")):
            with pytest.raises(InputError) as bad:
                source.check_filter(items, text)
            assert why in bad.value.cause, (text, bad.value.cause)
        assert source.check_filter(items, "v > 2 -- a trailing comment") == "v > 2 -- a trailing comment"
        with source.snapshot() as reader:
            assert reader.count(items, where="v > 2 -- a trailing comment") == 3
    finally:
        source.close()


def test_crafted_filters_change_nothing(mariadb_server: MariaDBServer, mariadb_db: str) -> None:
    """Even an account that may write everything cannot make a filter write: a statement never
    runs as more than one, and every read is inside a READ ONLY transaction."""
    _make_counter_table(mariadb_server, mariadb_db, 5)
    mariadb_server.execute("CREATE TABLE victim (id INT PRIMARY KEY)", db=mariadb_db)
    mariadb_server.execute("INSERT INTO victim VALUES (1), (2)", db=mariadb_db)
    mariadb_server.execute("CREATE TABLE audit (n INT)", db=mariadb_db)
    mariadb_server.execute("CREATE SEQUENCE counter", db=mariadb_db)
    mariadb_server.execute("CREATE FUNCTION side_effect() RETURNS INT DETERMINISTIC MODIFIES SQL DATA "
                           "BEGIN INSERT INTO audit VALUES (1); DELETE FROM victim; RETURN 1; END", db=mariadb_db)
    mariadb_server.execute("CREATE USER 'boss'@'%%' IDENTIFIED BY %s", (mariadb_server.password,))
    try:
        mariadb_server.execute("GRANT ALL PRIVILEGES ON *.* TO 'boss'@'%'")
        source = _source(mariadb_server, mariadb_db, user="boss")
        try:
            items = _table(source, "items")
            for crafted in ("1=1); DROP TABLE victim; --", "1=1; DELETE FROM victim", "1=1 /*!; DELETE FROM victim */",
                            "side_effect() = 1", "NEXTVAL(counter) > 0", "id IN (SELECT side_effect())",
                            "1=1\n) UNION SELECT id, id, id FROM victim WHERE (1=1"):
                with pytest.raises(InputError):
                    source.check_filter(items, crafted)
            with source.snapshot() as reader:
                for crafted in ("side_effect() = 1", "NEXTVAL(counter) > 0"):
                    with pytest.raises(MigrationFailed) as refused:
                        _all_rows(reader, items, where=crafted)
                    assert "READ ONLY" in refused.value.cause
                with pytest.raises(InputError):
                    _all_rows(reader, items, where="1=1); DELETE FROM victim; --")
        finally:
            source.close()
    finally:
        mariadb_server.execute("DROP USER 'boss'@'%'")
    assert mariadb_server.execute("SELECT id FROM victim ORDER BY id", db=mariadb_db) == [(1,), (2,)]
    assert mariadb_server.execute("SELECT COUNT(*) FROM audit", db=mariadb_db) == [(0,)]
    assert mariadb_server.execute("SELECT next_not_cached_value FROM counter", db=mariadb_db) == [(1,)]
    assert mariadb_server.execute("SELECT COUNT(*) FROM items", db=mariadb_db) == [(5,)]


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # A None entry in sys.modules makes every import of that name fail, as if not installed.
    for module in ("pymysql", "MySQLdb"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(EnvironmentProblem) as missing:
        open_mysql(ForeignEndpoint.parse("mysql://u@127.0.0.1:1/db").with_password("x"))
    assert "pip install 'pgtide[mysql]'" in missing.value.remedy
