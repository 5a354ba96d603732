"""Shared pieces for the engine tests: a pgbench-style writer and an exact table comparison."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from pgharness import PgCluster, wait_for
from psycopg import sql


class Writer:
    """Several connections inserting, updating and deleting on the source until stopped.

    Every operation commits on its own, like an application would; conflicts between
    writers (a row deleted by another) are simply skipped.
    """

    def __init__(self, cluster: PgCluster, dbname: str, tables: list[tuple[str, str]], *, connections: int = 3,
                 pause: float = 0.002) -> None:
        self.cluster = cluster
        self.dbname = dbname
        self.tables = tables
        self.pause = pause
        self.stop_event = threading.Event()
        self.operations = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._next_id = 10_000_000
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(connections)]

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with self.cluster.connect(self.dbname) as conn:
                while not self.stop_event.is_set():
                    schema, table = rng.choice(self.tables)
                    ident = sql.Identifier(schema, table)
                    op = rng.random()
                    if table == "readings":
                        self._readings(conn, rng, op)
                    elif table == "orders":
                        self._orders(conn, rng, op)
                    elif table == "big":
                        self._simple(conn, rng, op, "big", "payload", lambda: f"b{rng.random()}", 20_000)
                    elif table == "events":
                        self._simple(conn, rng, op, "events", "region", lambda: rng.choice(["eu", "us", None]), 500)
                    elif op < 0.4:
                        conn.execute(sql.SQL("INSERT INTO {} (id, {}, note) VALUES (%s, %s, %s)").format(
                            ident, sql.Identifier("Value Col")), [self._new_id(), f"w{rng.random()}", ""])
                    elif op < 0.8:
                        conn.execute(sql.SQL("UPDATE {} SET {} = %s, note = NULL WHERE id = %s").format(
                            ident, sql.Identifier("Value Col")), [f"u{rng.random()}", rng.randint(1, 400)])
                    else:
                        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(ident), [rng.randint(1, 400)])
                    with self._lock:
                        self.operations += 1
                    time.sleep(self.pause)
        except BaseException as exc:
            self.errors.append(exc)

    def _orders(self, conn: psycopg.Connection[Any], rng: random.Random, op: float) -> None:
        if op < 0.5:
            conn.execute("INSERT INTO orders (customer_id, amount) VALUES (%s, %s)", [rng.randint(1, 30), rng.random()])
        elif op < 0.85:
            conn.execute("UPDATE orders SET amount = amount + 1 WHERE id = %s", [rng.randint(1, 2000)])
        else:
            conn.execute("DELETE FROM orders WHERE id = %s", [rng.randint(1, 2000)])

    def _simple(self, conn: psycopg.Connection[Any], rng: random.Random, op: float, table: str, column: str,
                value: Any, max_id: int) -> None:
        ident, col = sql.Identifier(table), sql.Identifier(column)
        if op < 0.4:
            conn.execute(sql.SQL("INSERT INTO {} (id, {}) VALUES (%s, %s)").format(ident, col),
                         [self._new_id(), value()])
        elif op < 0.8:
            conn.execute(sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(ident, col),
                         [value(), rng.randint(1, max_id)])
        else:
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(ident), [rng.randint(1, max_id)])

    def _readings(self, conn: psycopg.Connection[Any], rng: random.Random, op: float) -> None:
        if op < 0.5:
            conn.execute("INSERT INTO readings (id, at, v) VALUES (%s, now() - %s * interval '1 day', %s)",
                         [self._new_id(), rng.randint(0, 60), rng.random()])
        elif op < 0.85:
            conn.execute("UPDATE readings SET v = %s WHERE id = %s", [rng.random(), rng.randint(1, 300)])
        else:
            conn.execute("DELETE FROM readings WHERE id = %s", [rng.randint(1, 300)])

    def __enter__(self) -> Writer:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)
        if self.errors:
            raise AssertionError(f"the writer failed: {self.errors[0]!r}")

    def __exit__(self, *exc: object) -> None:
        self.stop()


def table_rows(cluster: PgCluster, dbname: str, schema: str, table: str, where: str | None = None) -> list[Any]:
    query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table))
    if where:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(where))  # type: ignore[arg-type]
    with cluster.connect(dbname) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET extra_float_digits = 3")
        return sorted(row[0] for row in conn.execute(query))


def differences(source: PgCluster, target: PgCluster, dbname: str, tables: dict[tuple[str, str], str | None],
                target_dbname: str | None = None) -> dict[str, tuple[int, int]]:
    """Per table that differs: (rows only on the source, rows only on the target)."""
    out = {}
    for (schema, table), where in tables.items():
        left = table_rows(source, dbname, schema, table, where)
        right = table_rows(target, target_dbname or dbname, schema, table)
        if left != right:
            only_left = len(set(left) - set(right))
            only_right = len(set(right) - set(left))
            out[f"{schema}.{table}"] = (only_left, only_right)
    return out


def wait_until_identical(source: PgCluster, target: PgCluster, dbname: str,
                         tables: dict[tuple[str, str], str | None], *, timeout: float = 60) -> None:
    last: dict[str, tuple[int, int]] = {}

    def same() -> bool:
        nonlocal last
        last = differences(source, target, dbname, tables)
        return not last

    try:
        wait_for(same, timeout=timeout, interval=0.5, what="the target to catch up")
    except AssertionError:
        raise AssertionError(f"tables still differ after catch-up: {last}") from None


def replication_objects(source: PgCluster, target: PgCluster) -> dict[str, list[Any]]:
    """What pgtide could have left behind, on both servers."""
    found: dict[str, list[Any]] = {
        "slots": [r[0] for r in source.execute("SELECT slot_name FROM pg_replication_slots")],
        "publications": [],
        "subscriptions": [r[0] for r in target.execute("SELECT subname FROM pg_subscription")],
    }
    for (db,) in source.execute("SELECT datname FROM pg_database WHERE datallowconn"):
        found["publications"] += [r[0] for r in source.execute("SELECT pubname FROM pg_publication", dbname=db)]
    return found


def files_holding(secret: bytes, *roots: Path) -> list[Path]:
    """Plain files under ``roots`` (up to 1 MiB each) whose bytes contain ``secret``."""
    found = []
    for root in roots:
        # Other test runs' servers come and go under /tmp: a directory can vanish mid-walk.
        for directory, _, names in os.walk(root, onerror=lambda _: None):
            for name in names:
                path = Path(directory) / name
                try:
                    if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20 \
                            and secret in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


def add_slow_table(cluster: PgCluster, dbname: str, rows: int, *, seconds_per_row: float = 0.003) -> None:
    """``slow_rows``: each row costs ``seconds_per_row`` to check on the target (not on the
    source, where the session setting skips it): a copy slow enough to interrupt."""
    cluster.execute(
        f"""
        CREATE FUNCTION slow_check(int) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('pgtide_test.fast', true) IS DISTINCT FROM 'on' THEN
                PERFORM pg_sleep({float(seconds_per_row)});
            END IF;
            RETURN true;
        END $$;
        CREATE DOMAIN slow_int AS int CHECK (slow_check(VALUE));
        CREATE TABLE slow_rows (id int PRIMARY KEY, v slow_int);
        SET pgtide_test.fast = 'on';
        INSERT INTO slow_rows SELECT g, g FROM generate_series(1, {int(rows)}) g;
        """,
        dbname=dbname,
    )
