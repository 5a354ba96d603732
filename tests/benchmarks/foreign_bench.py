"""A foreign source into PostgreSQL: pgtide ``typed`` and ``jsonb`` against pgloader, in one run.

Usage: python tests/benchmarks/foreign_bench.py [--rows 1000000] [--repeat 1] [--sources sqlite,mysql]
                                                [--profile]

Starts a throwaway MariaDB (tests/mariadb_harness.py) and a throwaway PostgreSQL
(tests/pgharness.py), builds the same ``bench`` table of ROWS rows in MariaDB and in an
SQLite file — int auto_increment key, bigint, varchar(64), decimal(12,2), datetime,
tinyint(1), a ~100-byte text, nullable columns, one secondary index — and copies each,
into a fresh target database per run:

* ``read only``: pgtide's snapshot reader alone (``snapshot.rows()``, no target), the
  source side's ceiling;
* ``pgloader``: Debian's pgloader with its defaults (``pgloader SOURCE TARGET``): tables,
  data, indexes;
* ``pgtide typed``: ``ForeignSession(plan).init()``: tables, data, key and indexes;
* ``pgtide jsonb``: the same in the seed-compatible layout (its GIN index included).

The target is the harness's cluster (fsync off) with shared_buffers 256MB, max_wal_size
4GB and maintenance_work_mem 256MB, the same for every tool. Every copy runs in its own
child process, so its peak RSS (``wait4``'s ru_maxrss) and CPU time are its own, and its
wall time is the whole command's, startup included, as a user would wait for it. pgloader
gets the MySQL password in MYSQL_PWD, pgtide in PGTIDE_SOURCE_PASSWORD: never in argv. Each run's row count is checked on the target, so a broken run cannot look fast.
Prints seconds, rows/s, CPU seconds, peak RSS, and the ratios pgtide-typed / pgloader and
pgtide-jsonb / pgloader per source (the medians over --repeat rounds; each round runs
every method once, so a neighbour's load spreads over all of them). Target: pgtide typed
<= 1.0x pgloader.

``--profile`` skips the timed runs: it copies each source once per layout with a profiler
on the copy thread (pyinstrument when installed, else cProfile) and prints where the time went.

Needs: ``apt-get install -y pgloader`` (skipped with that hint when missing) and
``mariadbd`` (``apt-get install -y mariadb-server-core mariadb-client-core``; the MySQL
source is skipped with that hint when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bench import PgCluster, machine_bindir, running_cluster

PGLOADER_HINT = "apt-get install -y pgloader"
TABLE = "bench"

MYSQL_DDL = f"""
CREATE TABLE {TABLE} (
    id INT AUTO_INCREMENT PRIMARY KEY,
    account BIGINT NOT NULL,
    name VARCHAR(64) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    created DATETIME NOT NULL,
    active TINYINT(1) NOT NULL,
    note TEXT NULL,
    parent BIGINT NULL,
    email VARCHAR(64) NULL,
    updated DATETIME NULL,
    KEY bench_account (account)
) ENGINE=InnoDB CHARACTER SET utf8mb4
"""

# The same values the SQLite builder makes (seq = id): note is 80-119 bytes (~100), a fifth of
# the notes, a third of the parents, a seventh of the emails and half the updates are NULL.
MYSQL_FILL = f"""
INSERT INTO {TABLE} (id, account, name, amount, created, active, note, parent, email, updated)
SELECT seq, seq * 1000003, CONCAT('name-', seq, '-', LEFT(MD5(seq), 12)), (seq * 37 % 10000000) / 100,
       '2020-01-01' + INTERVAL seq SECOND, seq % 2,
       IF(seq % 5 = 0, NULL, LEFT(REPEAT(MD5(seq), 4), 80 + seq % 40)),
       IF(seq % 3 = 0, NULL, seq DIV 2), IF(seq % 7 = 0, NULL, CONCAT('user', seq, '@example.com')),
       IF(seq % 2 = 0, NULL, '2021-06-01' + INTERVAL seq MINUTE)
FROM seq_{{start}}_to_{{stop}}
"""

SQLITE_DDL = f"""
CREATE TABLE {TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account BIGINT NOT NULL,
    name VARCHAR(64) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    created DATETIME NOT NULL,
    active BOOLEAN NOT NULL,
    note TEXT,
    parent BIGINT,
    email VARCHAR(64),
    updated DATETIME
);
CREATE INDEX bench_account ON {TABLE} (account);
"""


# -- the sources -------------------------------------------------------------------------------


def build_sqlite(path: Path, rows: int) -> None:
    import datetime as dt

    created0, updated0 = dt.datetime(2020, 1, 1), dt.datetime(2021, 6, 1)
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL)

    def generate() -> Any:
        for seq in range(1, rows + 1):
            md5 = hashlib.md5(str(seq).encode()).hexdigest()
            yield (seq, seq * 1000003, f"name-{seq}-{md5[:12]}", (seq * 37 % 10000000) / 100,
                   (created0 + dt.timedelta(seconds=seq)).isoformat(" "), seq % 2,
                   None if seq % 5 == 0 else (md5 * 4)[:80 + seq % 40],
                   None if seq % 3 == 0 else seq // 2,
                   None if seq % 7 == 0 else f"user{seq}@example.com",
                   None if seq % 2 == 0 else (updated0 + dt.timedelta(minutes=seq)).isoformat(" "))

    with conn:
        conn.executemany(f"INSERT INTO {TABLE} VALUES (?,?,?,?,?,?,?,?,?,?)", generate())
    conn.close()


def build_mysql(server: Any, rows: int) -> str:
    db = server.create_database("bench")
    server.execute(MYSQL_DDL, db=db)
    step = 250_000
    for start in range(1, rows + 1, step):
        server.execute(MYSQL_FILL.format(start=start, stop=min(rows, start + step - 1)), db=db)
    # Warm the buffer pool for everyone alike: the first reader must not pay for the disk alone.
    server.execute(f"SELECT SUM(LENGTH(note)), SUM(account) FROM {TABLE}", db=db)
    return db


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    source: str
    method: str
    seconds: float
    rows: int
    peak_mb: float
    copy_seconds: float | None = None
    #: The child's own CPU time (user + system), all its threads.
    cpu_seconds: float = 0.0


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, int, float, float]:
    """(wall seconds, exit code, peak RSS in MiB, CPU seconds) of one child, its output in ``log``."""
    with log.open("wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        # wait4, not wait: its rusage is this child's own (ru_maxrss in KiB on Linux).
        _pid, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return seconds, child.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def target_count(target: PgCluster, db: str) -> int:
    """Rows in the one ``bench`` table on the target, wherever the tool put it (pgloader puts
    a MySQL database's tables in a schema named after it)."""
    found = target.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.relname = %s AND c.relkind = 'r'", [TABLE], dbname=db)
    if len(found) != 1:
        raise AssertionError(f"{db}: expected one table {TABLE!r} on the target, found {found}")
    from psycopg import sql

    return int(target.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(found[0][0], TABLE)),
                              dbname=db)[0][0])


class Bench:
    def __init__(self, target: PgCluster, work: Path, rows: int) -> None:
        self.target = target
        self.work = work
        self.rows = rows
        self.serial = 0

    def _fresh_db(self, label: str) -> str:
        self.serial += 1
        return f"{label}_{self.serial}"

    def _check(self, db: str, what: str) -> None:
        got = target_count(self.target, db)
        if got != self.rows:
            raise AssertionError(f"{what}: {got:,} rows on the target, expected {self.rows:,}")

    def pgloader(self, source: str, source_url: str, password: str | None) -> Run:
        db = self._fresh_db(f"pgloader_{source}")
        self.target.create_database(db)
        root = self.work / f"pgloader-{self.serial}"
        root.mkdir()
        env = {**os.environ}
        if password is not None:
            env["MYSQL_PWD"] = password  # pgloader reads the MySQL password from here: never argv
        seconds, code, peak, cpu = _spawn(
            ["pgloader", "--root-dir", str(root), "--logfile", str(root / "pgloader.log"), source_url,
             self.target.url(db)], env, root / "out.log")
        if code != 0:
            raise RuntimeError(f"pgloader ({source}) exited {code}:\n{_tail(root / 'out.log')}")
        self._check(db, f"pgloader ({source})")
        self.target.drop_database(db)
        return Run(source, "pgloader", seconds, self.rows, peak, cpu_seconds=cpu)

    def pgtide(self, source: str, layout: str, source_url: str, password: str | None, *,
               profile: Path | None = None) -> Run:
        db = self._fresh_db(f"pgtide_{layout}_{source}")
        state = self.work / f"state-{self.serial}"
        env = {**os.environ, "FOREIGN_BENCH_SOURCE": source_url, "FOREIGN_BENCH_TARGET": self.target.url(db),
               "PGTIDE_STATE_DIR": str(state / "state"), "PGTIDE_CONFIG_DIR": str(state / "config"),
               "PGTIDE_LOG_DIR": str(state / "log"), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
        if password is not None:
            env["PGTIDE_SOURCE_PASSWORD"] = password
        if profile is not None:
            env["FOREIGN_BENCH_PROFILE"] = str(profile)
        log = self.work / f"pgtide-{self.serial}.log"
        seconds, code, peak, cpu = _spawn([sys.executable, __file__, "--child", layout], env, log)
        if code != 0:
            raise RuntimeError(f"pgtide {layout} ({source}) exited {code}:\n{_tail(log)}")
        result = json.loads(log.read_text().splitlines()[-1])
        self._check(db, f"pgtide {layout} ({source})")
        self.target.drop_database(db)
        return Run(source, f"pgtide {layout}", seconds, result["rows"], peak, result.get("copy"), cpu)

    def read_only(self, source: str, source_url: str, password: str | None) -> Run:
        env = {**os.environ, "FOREIGN_BENCH_SOURCE": source_url,
               "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
        if password is not None:
            env["PGTIDE_SOURCE_PASSWORD"] = password
        log = self.work / f"read-{source}.log"
        seconds, code, peak, cpu = _spawn([sys.executable, __file__, "--child", "read"], env, log)
        if code != 0:
            raise RuntimeError(f"read only ({source}) exited {code}:\n{_tail(log)}")
        result = json.loads(log.read_text().splitlines()[-1])
        if result["rows"] != self.rows:
            raise AssertionError(f"read only ({source}): {result['rows']:,} rows, expected {self.rows:,}")
        return Run(source, "read only", seconds, result["rows"], peak, result["copy"], cpu)


# -- the child: one pgtide copy (or read) in its own process --------------------------------------


def _child(what: str) -> None:
    from pgtide.core.foreign.endpoint import ForeignEndpoint

    source = ForeignEndpoint.parse(os.environ["FOREIGN_BENCH_SOURCE"])
    if what == "read":
        from pgtide.core.foreign.drivers import open_source

        adapter = open_source(source)
        table = next(t for t in adapter.tables() if t.name == TABLE)
        rows = 0
        started = time.perf_counter()
        with adapter.snapshot() as snapshot:
            for batch in snapshot.rows(table):
                rows += len(batch)
        adapter.close()
        print(json.dumps({"rows": rows, "copy": time.perf_counter() - started}))
        return

    from pgtide.core.foreign import load
    from pgtide.core.foreign.plan import ForeignPlan
    from pgtide.core.foreign.session import ForeignSession
    from pgtide.core.infra.endpoint import Endpoint
    from pgtide.core.infra.events import PhaseFinished

    profile_to = os.environ.get("FOREIGN_BENCH_PROFILE")
    if profile_to:
        copy_table = load.copy_table

        # The copy runs on a worker thread, which neither profiler follows by itself: start it there.
        def profiled(*args: Any, **kwargs: Any) -> Any:
            try:
                from pyinstrument import Profiler
            except ImportError:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
                try:
                    return copy_table(*args, **kwargs)
                finally:
                    profiler.disable()
                    profiler.dump_stats(profile_to)
            sampler = Profiler(interval=0.001)
            sampler.start()
            try:
                return copy_table(*args, **kwargs)
            finally:
                sampler.stop()
                Path(profile_to).write_text(sampler.output_text(unicode=False, color=False, show_all=False))

        load.copy_table = profiled  # type: ignore[assignment]

    phases: dict[str, float] = {}

    def emit(event: Any) -> None:
        if isinstance(event, PhaseFinished):
            phases[event.phase] = event.seconds

    plan = ForeignPlan(source, Endpoint.parse(os.environ["FOREIGN_BENCH_TARGET"], env={}), layout=what)  # type: ignore[arg-type]
    session = ForeignSession(plan)
    session.init(emit=emit)
    rows = session.store.database(plan.database).get("tables", {}).get(TABLE, {}).get("rows", 0)
    print(json.dumps({"rows": rows, "copy": phases.get("copy"), "indexes": phases.get("indexes")}))


# -- the report --------------------------------------------------------------------------------


def report(runs: list[Run], rows: int, rounds: int) -> None:
    by: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by.setdefault((run.source, run.method), []).append(run)
    print()
    print(f"{rows:,} rows per source, median of {rounds} round(s); wall = the whole command, startup included")
    print(f"{'source':7} {'method':14} {'wall s':>8} {'rows/s':>10} {'copy s':>7} {'copy rows/s':>11} "
          f"{'cpu s':>6} {'peak RSS':>9} {'vs pgloader':>11}   rounds (wall s)")
    for source in dict.fromkeys(r.source for r in runs):
        base = by.get((source, "pgloader"))
        base_s = statistics.median(r.seconds for r in base) if base else None
        for method in ("read only", "pgloader", "pgtide typed", "pgtide jsonb"):
            group = by.get((source, method))
            if not group:
                continue
            seconds = statistics.median(r.seconds for r in group)
            copies = [r.copy_seconds for r in group if r.copy_seconds is not None]
            copy = (f"{statistics.median(copies):7.2f} {rows / statistics.median(copies):11,.0f}" if copies
                    else f"{'':>7} {'':>11}")
            ratio = f"{seconds / base_s:10.2f}x" if base_s and method.startswith("pgtide") else f"{'':>11}"
            each = " ".join(f"{r.seconds:.2f}" for r in group)
            cpu = statistics.median(r.cpu_seconds for r in group)
            print(f"{source:7} {method:14} {seconds:8.2f} {rows / seconds:10,.0f} {copy} {cpu:6.1f} "
                  f"{max(r.peak_mb for r in group):7.0f}MB {ratio}   {each}")
    print("target: pgtide typed <= 1.00x pgloader ('copy s' is pgtide's copy phase alone, or the read loop "
          "alone for 'read only'; 'cpu s' the tool's own process, all threads, not the servers')")


def print_profile(path: Path, label: str, top: int = 22) -> None:
    """pyinstrument's tree when it is installed (sampling: the shares as they are), else
    cProfile's top functions by own time (its per-call cost inflates small functions)."""
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        import pstats

        print(f"\n== profile: {label} (cProfile, copy thread, by own time; pip install pyinstrument "
              "for a sampling profile) ==")
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)
        return
    print(f"\n== profile: {label} (pyinstrument, copy thread) ==")
    print(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sources", default="sqlite,mysql")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]

    have_pgloader = shutil.which("pgloader") is not None
    if not have_pgloader and not args.profile:
        print(f"pgloader is not installed: {PGLOADER_HINT} (Debian's pgloader package). "
              "Measuring pgtide alone; no ratios.")
    from mariadb_harness import MariaDBMissing, MariaDBServer

    work = Path(tempfile.mkdtemp(prefix="pgtide-foreign-bench-"))
    server: MariaDBServer | None = None
    try:
        with running_cluster(machine_bindir(), shared_buffers="256MB", max_wal_size="4GB",
                             maintenance_work_mem="256MB") as target:
            bench = Bench(target, work, args.rows)
            prepared: dict[str, tuple[str, str, str | None]] = {}  # source -> (pgtide url, pgloader url, password)
            if "sqlite" in sources:
                path = work / "bench.db"
                started = time.perf_counter()
                build_sqlite(path, args.rows)
                print(f"sqlite: built {args.rows:,} rows in {time.perf_counter() - started:.1f}s "
                      f"({path.stat().st_size / 2**20:.0f} MB)")
                prepared["sqlite"] = (f"sqlite:///{path}", str(path), None)
            if "mysql" in sources:
                try:
                    server = MariaDBServer(settings={"innodb_buffer_pool_size": "512M", "innodb_log_file_size": "128M"})
                except MariaDBMissing as missing:
                    print(f"mysql: skipped: {missing}")
                else:
                    server.start()
                    started = time.perf_counter()
                    db = build_mysql(server, args.rows)
                    version = server.execute("SELECT VERSION()")[0][0]
                    print(f"mysql: built {args.rows:,} rows in {time.perf_counter() - started:.1f}s (MariaDB {version})")
                    # pgloader speaks mysql_native_password, MariaDB's default for this account.
                    plugin = server.execute("SELECT plugin FROM mysql.user WHERE user = 'pgtide'")
                    print(f"mysql: account auth plugin {plugin[0][0] if plugin else '?'}")
                    base = f"{server.host}:{server.port}/{db}"
                    prepared["mysql"] = (f"mysql://pgtide@{base}", f"mysql://pgtide@{base}", server.password)

            if args.profile:
                for source, (url, _loader_url, password) in prepared.items():
                    for layout in ("typed", "jsonb"):
                        out = work / f"profile-{source}-{layout}.out"
                        run = bench.pgtide(source, layout, url, password, profile=out)
                        print_profile(out, f"{source} {layout}: {run.seconds:.2f}s wall under the profiler")
                return

            runs: list[Run] = []
            for source, (url, _loader_url, password) in prepared.items():
                runs.append(bench.read_only(source, url, password))
            for round_no in range(args.repeat):
                for source, (url, loader_url, password) in prepared.items():
                    done = [bench.pgloader(source, loader_url, password)] if have_pgloader else []
                    done.append(bench.pgtide(source, "typed", url, password))
                    done.append(bench.pgtide(source, "jsonb", url, password))
                    runs += done
                    print(f"round {round_no + 1} {source}: " + ", ".join(f"{r.method} {r.seconds:.2f}s" for r in done))
            report(runs, args.rows, args.repeat)
    finally:
        if server is not None:
            server.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        main()
