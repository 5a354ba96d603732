"""Which MySQL driver reads a big table fastest: the measurement behind core/foreign/mysql.py's choice.

Starts a throwaway MariaDB (tests/mariadb_harness.py), loads a 1 M-row table (int, bigint,
varchar, decimal, datetime, a nullable varchar) and reads it in full, in key order, with
each installed driver — each run in its own child process so its peak RSS is its own:

* PyMySQL, unbuffered ``SSCursor`` (one streamed ``SELECT … ORDER BY id``);
* PyMySQL, keyset batches (``WHERE id > last ORDER BY id LIMIT n``, one query per batch);
* mysql-connector-python with its C extension (``use_pure=False``), unbuffered, and raw
  (bytes, converted by nothing) for the floor of the protocol cost;
* mysql-connector-python pure Python (for reference);
* mysqlclient ``SSCursor`` and keyset batches (needs a compiler and libmariadb-dev, so only
  when installed);
* pgtide's own snapshot reader (core/foreign/mysql.py) on each of PyMySQL and mysqlclient.

Prints rows/s, each one's ratio to the fastest, and peak RSS.

    .venv/bin/python tests/benchmarks/mysql_driver_bench.py [ROWS] [REPEAT] [DRIVER,…]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for mariadb_harness

if TYPE_CHECKING:
    from mariadb_harness import MariaDBServer

BATCH = 5000
SELECT = "SELECT id, a, b, name, amount, created, note FROM bench"


def _child(driver: str, host: str, port: int, user: str, password: str, db: str) -> None:
    """Read the whole table once with ``driver``; print {rows, seconds} as JSON."""
    rows = 0
    start = time.perf_counter()
    if driver.startswith("pymysql"):
        import pymysql
        import pymysql.cursors

        conn = pymysql.connect(host=host, port=port, user=user, password=password, database=db,
                               charset="utf8mb4")
        if driver == "pymysql-sscursor":
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(SELECT + " ORDER BY id")
                while batch := cur.fetchmany(BATCH):
                    rows += len(batch)
        else:
            last = None
            with conn.cursor() as cur:
                while True:
                    if last is None:
                        cur.execute(SELECT + " ORDER BY id LIMIT %s", (BATCH,))
                    else:
                        cur.execute(SELECT + " WHERE id > %s ORDER BY id LIMIT %s", (last, BATCH))
                    batch = cur.fetchall()
                    if not batch:
                        break
                    rows += len(batch)
                    last = batch[-1][0]
        conn.close()
    elif driver.startswith("connector"):
        if driver != "connector-pure":
            # The wheel's C extension links the OpenSSL 3.2+ it vendors; once Python's own ssl
            # module has loaded the system's older libssl.so.3 (Debian 12: 3.0) the extension no
            # longer loads. Imported first, it works (and Python's ssl then uses the vendored one).
            import _mysql_connector  # noqa: F401
        import mysql.connector

        pure = driver == "connector-pure"
        conn = mysql.connector.connect(host=host, port=port, user=user, password=password, database=db,
                                       charset="utf8mb4", use_pure=pure)
        if not pure:
            from mysql.connector.connection_cext import CMySQLConnection

            assert isinstance(conn, CMySQLConnection), "the C extension did not load"
        cur = conn.cursor(raw=driver == "connector-cext-raw")
        cur.execute(SELECT + " ORDER BY id")
        while batch := cur.fetchmany(BATCH):
            rows += len(batch)
        cur.close()
        conn.close()
    elif driver.startswith("mysqlclient"):
        import MySQLdb
        import MySQLdb.cursors

        conn = MySQLdb.connect(host=host, port=port, user=user, password=password, database=db,
                               charset="utf8mb4")
        if driver == "mysqlclient-sscursor":
            cur = conn.cursor(MySQLdb.cursors.SSCursor)
            cur.execute(SELECT + " ORDER BY id")
            while batch := cur.fetchmany(BATCH):
                rows += len(batch)
        else:
            cur = conn.cursor()
            last = None
            while True:
                if last is None:
                    cur.execute(SELECT + " ORDER BY id LIMIT %s", (BATCH,))
                else:
                    cur.execute(SELECT + " WHERE id > %s ORDER BY id LIMIT %s", (last, BATCH))
                batch = cur.fetchall()
                if not batch:
                    break
                rows += len(batch)
                last = batch[-1][0]
        cur.close()
        conn.close()
    elif driver.startswith("adapter-"):
        # What the copy gets: core/foreign/mysql.py's snapshot reader (keyset batches, key order).
        from pgtide.core.foreign.endpoint import ForeignEndpoint
        from pgtide.core.foreign.mysql import MySQLSource

        endpoint = ForeignEndpoint.parse(f"mysql://{user}@{host}:{port}/{db}").with_password(password)
        source = MySQLSource(endpoint, prefer_fast_driver=driver == "adapter-mysqlclient")
        table = next(t for t in source.tables() if t.name == "bench")
        with source.snapshot() as reader:
            for batch in reader.rows(table, batch=BATCH):
                rows += len(batch)
        source.close()
    else:
        raise SystemExit(f"unknown driver {driver}")
    seconds = time.perf_counter() - start
    # VmHWM is this process's own peak (ru_maxrss would also count the parent's image it was forked from).
    peak_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmHWM:"))
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_kb": peak_kb}))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _run(driver: str, server: MariaDBServer, db: str) -> tuple[float, int, float]:
    """(seconds, rows, peak RSS MiB) of one child run."""
    env = {**os.environ, "MYSQL_BENCH_PASSWORD": server.password}
    child = subprocess.Popen([sys.executable, __file__, "--child", driver, server.host, str(server.port),
                              "pgtide", db], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    out = child.stdout.read()
    if child.wait() != 0:
        raise RuntimeError(f"{driver} failed ({child.returncode})")
    result = json.loads(out)
    return result["seconds"], result["rows"], result["peak_kb"] / 1024


def main() -> None:
    # Imported here, not at the top: the children must not load Python's ssl before a driver.
    from mariadb_harness import MariaDBServer

    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    drivers = ["pymysql-sscursor", "pymysql-keyset", "adapter-pymysql"]
    if _installed("mysql.connector"):
        drivers += ["connector-cext", "connector-cext-raw", "connector-pure"]
    if _installed("MySQLdb"):
        drivers += ["mysqlclient-sscursor", "mysqlclient-keyset", "adapter-mysqlclient"]
    if len(sys.argv) > 3:
        drivers = [d for d in drivers if d in sys.argv[3].split(",")]
    server = MariaDBServer(settings={"innodb_buffer_pool_size": "384M", "innodb_log_file_size": "64M"})
    try:
        server.start()
        db = server.create_database("bench")
        server.execute(f"GRANT ALL ON {db}.* TO 'pgtide'@'%'")
        load = time.perf_counter()
        server.execute(
            "CREATE TABLE bench (id INT PRIMARY KEY, a INT NOT NULL, b BIGINT NOT NULL, name VARCHAR(64) NOT NULL,"
            " amount DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL, note VARCHAR(200) NULL) ENGINE=InnoDB",
            db=db)
        server.execute(
            "INSERT INTO bench SELECT seq, seq * 7 % 100000, seq * 1000003, CONCAT('name-', seq, '-', MD5(seq)),"
            " (seq % 100000) / 100, '2020-01-01' + INTERVAL seq SECOND,"
            f" IF(seq % 3 = 0, NULL, REPEAT('n', seq % 50)) FROM seq_1_to_{total}", db=db)
        print(f"loaded {total} rows in {time.perf_counter() - load:.1f}s (MariaDB {server.execute('SELECT VERSION()')[0][0]})")
        _run(drivers[0], server, db)  # warm the buffer pool
        results: dict[str, tuple[float, float]] = {}
        for driver in drivers:
            times, peaks = [], []
            for _ in range(repeat):
                seconds, rows, peak = _run(driver, server, db)
                assert rows == total, (driver, rows)
                times.append(seconds)
                peaks.append(peak)
            results[driver] = (statistics.median(times), max(peaks))
        best = min(seconds for seconds, _ in results.values())
        print(f"{'driver':24} {'rows/s':>10} {'seconds':>8} {'vs fastest':>10} {'peak RSS':>9}")
        for driver, (seconds, peak) in sorted(results.items(), key=lambda item: item[1][0]):
            print(f"{driver:24} {total / seconds:10,.0f} {seconds:8.2f} {seconds / best:9.2f}x {peak:7.0f}MB")
    finally:
        server.destroy()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _driver, _host, _port, _user, _db = sys.argv[2:7]
        _child(_driver, _host, int(_port), _user, os.environ["MYSQL_BENCH_PASSWORD"], _db)
    else:
        main()
