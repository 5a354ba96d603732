"""How fast pgtide verify compares a large table, against what the server can do at best.

Usage: python tests/benchmarks/verify_bench.py [--scale 100] [--repeat 3]

Starts two throwaway clusters, fills both with the same pgbench_accounts (pgbench -i -s
SCALE: 100,000 rows per scale unit, 10 M at the default), then times in one run:

- ``count(*)`` on the source: reading the table at all;
- the floor: ``sum(hashtext(t::text)::bigint), count(*)`` on the source, parallel as the
  server likes: the cheapest full-row hash there is, one side only, no way to locate rows;
- the seeds' method: ``md5(string_agg(t::text ORDER BY aid))`` on both sides at once,
  per 1 M-row key range (one aggregate over 10 M rows passes the 1 GB string limit);
- pgtide verify, source against target: identical, then with 10 planted differences,
  which it must name exactly;
- pgtide verify against a target missing 10 % of the rows (every tenth key), then all of
  them: the missing count must be exact and the first keys named.

Targets: pgtide <= 2x the floor while still naming the planted rows; <= 3x the floor with
a tenth or all of the rows missing.

Each ratio is against the floor measured just before and just after that very run (the
median over the runs): on a machine shared with other work, a floor taken minutes earlier
would measure the neighbours' load as much as pgtide.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from _bench import (
    LOGICAL_SETTINGS,
    PgCluster,
    machine_bindir,
    median_time,
    running_cluster,
)

from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Plan
from pgtide.core.model.selection import Selection
from pgtide.core.verify.compare import RowDifference, VerifyOptions, verify_plan

ROWS_PER_SCALE = 100_000
SEEDS_CHUNK = 1_000_000

T = TypeVar("T")


def pgbench_init(cluster: PgCluster, scale: int) -> subprocess.Popen[bytes]:
    pgbench = machine_bindir() / "pgbench"
    return subprocess.Popen(
        [str(pgbench), "-i", "-s", str(scale), "-q", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
         "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def timed(label: str, seconds: float, ratio: float | None = None) -> None:
    shown = f"   {ratio:5.2f}x floor" if ratio is not None else ""
    print(f"{label:<52} {seconds:7.2f} s{shown}", flush=True)


class Floored:
    """Times actions between two floor measurements each; every floor taken is kept."""

    def __init__(self, floor: Callable[[], object]) -> None:
        self._floor = floor
        self.floors: list[float] = []
        self._last = self._time_floor()

    def _time_floor(self) -> float:
        started = time.perf_counter()
        self._floor()
        self.floors.append(time.perf_counter() - started)
        return self.floors[-1]

    def measure(self, action: Callable[[], T], repeat: int) -> tuple[float, float, T]:
        """(median seconds, median ratio to the floors either side of each run, last result)."""
        seconds, ratios = [], []
        result: T
        for _ in range(repeat):
            started = time.perf_counter()
            result = action()
            seconds.append(time.perf_counter() - started)
            before, self._last = self._last, self._time_floor()
            ratios.append(seconds[-1] / ((before + self._last) / 2))
        return statistics.median(seconds), statistics.median(ratios), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=100, help="pgbench scale (100,000 rows each; default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median; default 3)")
    args = parser.parse_args()
    rows = args.scale * ROWS_PER_SCALE

    with running_cluster(machine_bindir(), **LOGICAL_SETTINGS) as source, \
            running_cluster(machine_bindir(), **LOGICAL_SETTINGS) as target:
        started = time.perf_counter()
        for cluster in (source, target):
            cluster.create_database("bench")
        # Same scale, same deterministic rows on both sides; initialised in parallel.
        jobs = [pgbench_init(cluster, args.scale) for cluster in (source, target)]
        for job in jobs:
            _, err = job.communicate()
            if job.returncode:
                sys.exit(f"pgbench -i failed: {err.decode(errors='replace')}")
        print(f"pgbench_accounts: {rows:,} rows on each side (initialised in {time.perf_counter() - started:.0f} s)")
        for cluster in (source, target):  # warm the caches the same way for every measurement
            cluster.execute("SELECT count(*) FROM pgbench_accounts", dbname="bench")

        def on_source(query: str) -> None:
            with source.connect("bench") as conn:
                conn.execute(query).fetchall()

        count_seconds, _ = median_time(lambda: on_source("SELECT count(*) FROM pgbench_accounts"), repeat=args.repeat)
        floored = Floored(lambda: on_source("SELECT sum(hashtext(t::text)::bigint), count(*) FROM pgbench_accounts t"))

        def seeds_side(cluster: PgCluster, out: list[str]) -> None:
            with cluster.connect("bench") as conn:
                for first in range(1, rows + 1, SEEDS_CHUNK):
                    out.append(conn.execute(
                        "SELECT md5(string_agg(t::text, '' ORDER BY aid)) FROM pgbench_accounts t "
                        "WHERE aid BETWEEN %s AND %s", [first, first + SEEDS_CHUNK - 1]).fetchone()[0])

        def seeds() -> bool:
            results: tuple[list[str], list[str]] = ([], [])
            threads = [threading.Thread(target=seeds_side, args=(c, r)) for c, r in zip((source, target), results, strict=False)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return results[0] == results[1]

        seeds_seconds, seeds_ratio, seeds_equal = floored.measure(seeds, repeat=1)
        assert seeds_equal

        plan = Plan(
            Endpoint.parse(source.url("bench"), env={}),
            Endpoint.parse(target.url("bench"), env={}),
            Selection.from_cli(include_databases="bench"),
        )
        options = VerifyOptions(jobs=1)
        clean_seconds, clean_ratio, report = floored.measure(
            lambda: verify_plan(plan, tables=["pgbench_accounts"], options=options), repeat=args.repeat)
        assert report.ok, report

        planted = {
            RowDifference("different", (str(aid),)) for aid in (17, rows // 3, rows // 2, rows - 5)
        } | {
            RowDifference("missing", (str(aid),)) for aid in (1, rows // 4, rows)
        } | {
            RowDifference("extra", (str(aid),)) for aid in (rows + 1, rows + 1000, rows * 2)
        }
        with target.connect("bench") as conn:
            for difference in planted:
                aid = int(difference.key[0])
                if difference.kind == "different":
                    conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = %s", [aid])
                elif difference.kind == "missing":
                    conn.execute("DELETE FROM pgbench_accounts WHERE aid = %s", [aid])
                else:
                    conn.execute("INSERT INTO pgbench_accounts VALUES (%s, 1, 0, '')", [aid])
        planted_seconds, planted_ratio, report = floored.measure(
            lambda: verify_plan(plan, tables=["pgbench_accounts"], options=options), repeat=1)
        (result,) = report.tables
        found = set(result.differences)
        assert found == planted, f"expected {sorted(planted, key=str)}, got {sorted(found, key=str)}"

        # Back to identical (pgbench's rows are deterministic), then the dense cases.
        with target.connect("bench") as conn:
            for difference in planted:
                aid = int(difference.key[0])
                if difference.kind == "different":
                    conn.execute("UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid = %s", [aid])
                elif difference.kind == "missing":
                    conn.execute("INSERT INTO pgbench_accounts VALUES (%s, (%s - 1) / 100000 + 1, 0, '')", [aid, aid])
                else:
                    conn.execute("DELETE FROM pgbench_accounts WHERE aid = %s", [aid])
            conn.execute("DELETE FROM pgbench_accounts WHERE aid % 10 = 0")
            conn.execute("VACUUM pgbench_accounts")  # no autovacuum starting mid-measurement
        tenth_seconds, tenth_ratio, report = floored.measure(
            lambda: verify_plan(plan, tables=["pgbench_accounts"], options=options), repeat=args.repeat)
        (tenth,) = report.tables
        assert (tenth.missing, tenth.extra, tenth.different) == (rows // 10, 0, 0), tenth
        assert [d.key[0] for d in tenth.differences[:3]] == ["10", "20", "30"], tenth.differences[:3]

        target.execute("TRUNCATE pgbench_accounts", dbname="bench")
        empty_seconds, empty_ratio, report = floored.measure(
            lambda: verify_plan(plan, tables=["pgbench_accounts"], options=options), repeat=args.repeat)
        (empty,) = report.tables
        assert (empty.missing, empty.extra, empty.different) == (rows, 0, 0), empty
        assert [d.key[0] for d in empty.differences[:3]] == ["1", "2", "3"], empty.differences[:3]

    print()
    floor_seconds = statistics.median(floored.floors)
    timed("count(*), source", count_seconds)
    timed("floor: sum(hashtext(t::text)), source, parallel", floor_seconds, 1.0)
    timed("seeds: md5(string_agg ORDER BY) per 1M keys, both", seeds_seconds, seeds_ratio)
    timed("pgtide verify, both sides, no differences", clean_seconds, clean_ratio)
    timed("pgtide verify, both sides, 10 planted (all named)", planted_seconds, planted_ratio)
    timed("pgtide verify, target missing 10 % of the rows", tenth_seconds, tenth_ratio)
    timed("pgtide verify, target missing every row", empty_seconds, empty_ratio)
    target_met = clean_ratio <= 2 and planted_ratio <= 2
    dense_met = tenth_ratio <= 3 and empty_ratio <= 3
    print(f"\nfloor measured {len(floored.floors)} times, next to each run: {min(floored.floors):.2f} s to "
          f"{max(floored.floors):.2f} s (each ratio is to the floors either side of its run)")
    print(f"target pgtide <= 2x floor: {'met' if target_met else 'MISSED'}; "
          f"pgtide is {seeds_seconds / clean_seconds:.1f}x faster than the seeds' method")
    print(f"target pgtide <= 3x floor with rows missing: {'met' if dense_met else 'MISSED'}")
    print(f"planted differences named: {len(found)}/{len(planted)} "
          f"({', '.join(f'{d.kind} {d.key[0]}' for d in sorted(found, key=lambda d: (d.kind, int(d.key[0]))))})")
    for label, result in (("10 % missing", tenth), ("all missing", empty)):
        first = ", ".join(d.key[0] for d in result.differences[:3])
        print(f"{label}: {result.missing:,} of {rows:,} missing (exact), first keys {first}; "
              f"{result.listed_ranges} range(s) listed, {result.dense_ranges} dense")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
