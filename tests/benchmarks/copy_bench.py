"""Copy speed: the seeds' method, the practical limit, and pgtide init — in one run.

Usage: python tests/benchmarks/copy_bench.py [--scale 100] [--repeat 1] [--jobs 2]

Source: pgbench -i -s SCALE. Each method copies into a fresh target database:
 (a) seeds: pg_dump -Fd -j2 -Z9, then pg_restore -j2;
 (b) limit: pre-data schema, one raw COPY (FORMAT binary) psql->psql pipe per table
     (JOBS at a time), then post-data with pg_restore -jJOBS;
 (c) pgtide init, until the subscription is streaming;
 (d) peer: pgcopydb clone --table-jobs JOBS --index-jobs JOBS (Debian's pgcopydb package;
     skipped with the reason when it is not installed).
Prints each median and the ratios; target (c) <= 1.1 x (b), and pgtide against the fastest
peer measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _bench import LOGICAL_SETTINGS, PgCluster, machine_bindir, median_time, running_cluster

from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers")


def _conninfo(cluster: PgCluster, db: str) -> str:
    return f"host=127.0.0.1 port={cluster.port} user=postgres dbname={db}"


def _run(*argv: str | Path, stdin: int | None = None, stdout: int | None = None) -> None:
    subprocess.run([str(a) for a in argv], check=True, stdin=stdin, stdout=stdout or subprocess.DEVNULL)


def seeds_method(bindir: Path, source: PgCluster, target: PgCluster, db: str) -> None:
    target.create_database(db)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dump"
        _run(bindir / "pg_dump", "-Fd", "-j2", "-Z9", "-f", out, "-d", _conninfo(source, "bench"))
        _run(bindir / "pg_restore", "-j2", "-d", _conninfo(target, db), out)


def limit_method(bindir: Path, source: PgCluster, target: PgCluster, db: str, jobs: int) -> None:
    target.create_database(db)
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.dump"
        _run(bindir / "pg_dump", "-Fc", "--schema-only", "-f", schema, "-d", _conninfo(source, "bench"))
        _run(bindir / "pg_restore", "--section=pre-data", "-d", _conninfo(target, db), schema)

        def pipe(table: str) -> None:
            producer = subprocess.Popen(
                [str(bindir / "psql"), "-X", "-q", "-d", _conninfo(source, "bench"), "-c",
                 f"COPY {table} TO STDOUT (FORMAT binary)"], stdout=subprocess.PIPE)
            consumer = subprocess.Popen(
                [str(bindir / "psql"), "-X", "-q", "-d", _conninfo(target, db), "-c",
                 f"COPY {table} FROM STDIN (FORMAT binary)"], stdin=producer.stdout, stdout=subprocess.DEVNULL)
            assert producer.stdout is not None
            producer.stdout.close()
            if consumer.wait() or producer.wait():
                raise RuntimeError(f"pipe for {table} failed")

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(pipe, TABLES))
        _run(bindir / "pg_restore", "--section=post-data", f"-j{jobs}", "-d", _conninfo(target, db), schema)


def pgcopydb_method(bindir: Path, source: PgCluster, target: PgCluster, db: str, jobs: int) -> None:
    """The peer: a whole-database clone (schema, parallel COPY, parallel indexes) by pgcopydb."""
    target.create_database(db)
    with tempfile.TemporaryDirectory(prefix="pgcopydb-") as tmp:
        # pgcopydb runs pg_dump/pg_restore from PATH: the server's own major version.
        env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
        subprocess.run(["pgcopydb", "clone", "--source", source.url(dbname="bench"), "--target", target.url(dbname=db),
                        "--table-jobs", str(jobs), "--index-jobs", str(jobs), "--dir", tmp, "--no-owner", "--no-acl"],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pgtide_method(source: PgCluster, target: PgCluster, jobs: int) -> None:
    plan = Plan(Endpoint.parse(source.url(dbname="bench"), env={}), Endpoint.parse(target.url(dbname="bench"), env={}),
                Selection(), Options(jobs=jobs, drop_existing=True, resume=False, copy_roles=False))
    migrate.init(plan)
    deadline = time.monotonic() + 120
    while not target.execute("SELECT 1 FROM pg_stat_subscription WHERE pid IS NOT NULL", dbname="bench"):
        if time.monotonic() > deadline:
            raise RuntimeError("the subscription did not start streaming")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    bindir = machine_bindir()
    os.environ.setdefault("PGTIDE_STATE_DIR", tempfile.mkdtemp(prefix="pgtide-bench-state-"))
    settings = {**LOGICAL_SETTINGS, "shared_buffers": "512MB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
    with running_cluster(bindir, **settings) as source, running_cluster(bindir, **settings) as target:
        source.create_database("bench")
        print(f"pgbench -i -s {args.scale} ...", flush=True)
        _run(bindir / "pgbench", "-i", "-q", "-s", str(args.scale), "-d", _conninfo(source, "bench"))
        size = source.execute("SELECT pg_size_pretty(pg_database_size('bench'))")[0][0]
        print(f"source database: {size}", flush=True)
        counter = iter(range(1000))

        def fresh() -> str:
            return f"t{next(counter)}"

        def drop_all() -> None:
            target.clean_replication()
            for (name,) in target.execute("SELECT datname FROM pg_database WHERE datname ~ '^t[0-9]+$' OR datname = 'bench'"):
                target.drop_database(name)
            source.clean_replication()

        results: dict[str, float] = {}
        for label, action in (
            ("(a) seeds: pg_dump -Fd -j2 -Z9 + pg_restore -j2", lambda: seeds_method(bindir, source, target, fresh())),
            ("(b) limit: pre-data + binary psql pipes + post-data", lambda: limit_method(bindir, source, target, fresh(),
                                                                                         args.jobs)),
            ("(c) pgtide init until streaming", lambda: pgtide_method(source, target, args.jobs)),
            (f"(d) peer: pgcopydb clone --table-jobs {args.jobs} --index-jobs {args.jobs}",
             lambda: pgcopydb_method(bindir, source, target, fresh(), args.jobs)),
        ):
            if label.startswith("(d)") and shutil.which("pgcopydb") is None:
                print(f"{label:55s} skipped: pgcopydb is not installed (Debian: apt-get install pgcopydb)", flush=True)
                continue
            times = []
            for _ in range(args.repeat):
                drop_all()
                seconds, _ = median_time(action, repeat=1)
                times.append(seconds)
            times.sort()
            results[label] = times[len(times) // 2]
            print(f"{label:55s} {results[label]:7.2f} s", flush=True)
        drop_all()
    a, b, c = list(results.values())[:3]
    print(f"\n(c)/(b) = {c / b:.2f}  (target <= 1.10: {'met' if c / b <= 1.10 else 'MISSED'})")
    print(f"(c)/(a) = {c / a:.2f}")
    peers = {label: seconds for label, seconds in results.items() if label.startswith("(d)")}
    if peers:
        fastest, seconds = min(peers.items(), key=lambda item: item[1])
        print(f"(c)/fastest peer = {c / seconds:.2f}  ({fastest.split(': ', 1)[1]}: {seconds:.2f} s; pgtide also "
              "leaves replication streaming from the copy's snapshot, the peer only copies)")
    shutil.rmtree(os.environ["PGTIDE_STATE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
