"""Replication lag under load, as pgtide reports it and as the walsender does — in one run.

Usage: python tests/benchmarks/lag_bench.py [--scale 10] [--seconds 60] [--clients 4] [--changes 5]

Two throwaway servers; pgbench -i -s SCALE on the source, `pgtide init`, then pgbench -c
CLIENTS -T SECONDS on the source while streaming. Every 100 ms: pgtide's lag (bytes and
seconds) through the status API (Monitor.poll, the same call `pgtide status` and the
dashboard make) and, as the baseline, the walsender's own replay_lag from
pg_stat_replication. Prints p50 / p95 / max of each.

Then the time from a change of state to the dashboard showing it: a loop that polls as the
dashboard does (every second, re-armed after each poll) while the subscription is disabled
and re-enabled CHANGES times at random moments; the figure is the time from the ALTER
SUBSCRIPTION to the first poll result that shows it. Targets: p95 apply lag < 1 s; a state
change visible <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

from _bench import LOGICAL_SETTINGS, PgCluster, machine_bindir, running_cluster
from psycopg import sql

from pgtide.core.engine import migrate
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection
from pgtide.core.monitor.poll import Monitor
from pgtide.core.replication.naming import replication_names

DASHBOARD_POLL_SECONDS = 1.0  # app/tui.py's default poll interval


def _conninfo(cluster: PgCluster, db: str) -> str:
    return f"host=127.0.0.1 port={cluster.port} user=postgres dbname={db}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(label: str, values: list[float], unit: str, scale: float = 1.0) -> str:
    if not values:
        return f"{label:42s} no samples"
    return (f"{label:42s} p50 {percentile(values, 0.5) * scale:9.3f} {unit}   p95 {percentile(values, 0.95) * scale:9.3f} "
            f"{unit}   max {max(values) * scale:9.3f} {unit}   ({len(values)} samples)")


def sample_lag(monitor: Monitor, source: PgCluster, slot: str, stop: threading.Event) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"bytes": [], "seconds": [], "replay_lag": [], "poll": []}
    with source.connect("bench") as conn:
        while not stop.is_set():
            started = time.monotonic()
            db = monitor.poll().databases[0]
            out["poll"].append(time.monotonic() - started)
            if db.lag_bytes is not None:
                out["bytes"].append(float(db.lag_bytes))
            if db.lag_seconds is not None:
                out["seconds"].append(db.lag_seconds)
            row = conn.execute("SELECT extract(epoch FROM r.replay_lag) FROM pg_stat_replication r "
                               "JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = %s",
                               [slot]).fetchone()
            # replay_lag is NULL once the standby caught up and nothing new came: that is 0.
            out["replay_lag"].append(float(row[0]) if row and row[0] is not None else 0.0)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
    return out


def state_changes(monitor: Monitor, target: PgCluster, subscription: str, changes: int) -> list[tuple[str, float]]:
    """(what, seconds from the ALTER SUBSCRIPTION to a dashboard-paced poll showing it)."""
    seen: list[tuple[float, bool]] = []
    stop = threading.Event()

    def dashboard() -> None:
        while not stop.is_set():
            db = monitor.poll().databases[0]
            seen.append((time.monotonic(), db.target.enabled))
            stop.wait(DASHBOARD_POLL_SECONDS)  # re-armed after each poll, as the app does

    thread = threading.Thread(target=dashboard, daemon=True)
    thread.start()
    results: list[tuple[str, float]] = []
    try:
        for _ in range(changes):
            for verb, enabled in (("DISABLE", False), ("ENABLE", True)):
                time.sleep(random.uniform(1.0, 3.0))
                target.execute(sql.SQL("ALTER SUBSCRIPTION {} {}").format(sql.Identifier(subscription), sql.SQL(verb)),
                               dbname="bench")
                changed_at = time.monotonic()
                deadline = changed_at + 30
                while time.monotonic() < deadline:
                    shown = next((at for at, state in list(seen) if at >= changed_at and state is enabled), None)
                    if shown is not None:
                        results.append((verb.lower() + "d", shown - changed_at))
                        break
                    time.sleep(0.01)
                else:
                    results.append((verb.lower() + "d", float("inf")))
    finally:
        stop.set()
        thread.join(timeout=10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    bindir = machine_bindir()
    os.environ.setdefault("PGTIDE_STATE_DIR", tempfile.mkdtemp(prefix="pgtide-bench-state-"))
    settings = {**LOGICAL_SETTINGS, "shared_buffers": "256MB", "max_wal_size": "4GB"}
    with running_cluster(bindir, **settings) as source, running_cluster(bindir, **settings) as target:
        source.create_database("bench")
        subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", str(args.scale), "-d",
                        _conninfo(source, "bench")], check=True, stdout=subprocess.DEVNULL)
        plan = Plan(Endpoint.parse(source.url(dbname="bench"), env={}),
                    Endpoint.parse(target.url(dbname="bench"), env={}), Selection(), Options(jobs=2))
        migrate.init(plan)
        names = replication_names(plan.source, plan.target, "bench")
        with Monitor.from_plan(plan, ["bench"]) as monitor:
            deadline = time.monotonic() + 60
            while monitor.poll().databases[0].state.value != "streaming":
                if time.monotonic() > deadline:
                    raise RuntimeError("not streaming after init")
                time.sleep(0.2)
            print(f"pgbench -c{args.clients} -T{args.seconds} on the source (scale {args.scale}) while streaming ...",
                  flush=True)
            stop = threading.Event()
            box: dict[str, Any] = {}
            sampler = threading.Thread(target=lambda: box.update(sample_lag(monitor, source, names.slot, stop)))
            sampler.start()
            bench = subprocess.run([str(bindir / "pgbench"), f"-c{args.clients}", "-j2", f"-T{args.seconds}", "-n",
                                    _conninfo(source, "bench")], check=True, capture_output=True, text=True)
            stop.set()
            sampler.join()
            tps = next((line for line in bench.stdout.splitlines() if line.startswith("tps")), "tps ?")
            print(f"pgbench: {tps}")
            print(summary("pgtide lag (status API), bytes", box["bytes"], "kB", 1 / 1024))
            print(summary("pgtide lag (status API), seconds", box["seconds"], "s"))
            print(summary("walsender replay_lag (baseline)", box["replay_lag"], "s"))
            print(summary("one status poll", box["poll"], "ms", 1000))
            p95 = percentile(box["seconds"], 0.95)
            print(f"p95 apply lag {p95:.3f} s (target < 1 s: {'met' if p95 < 1 else 'MISSED'}); "
                  f"walsender p95 {percentile(box['replay_lag'], 0.95):.3f} s")

            changes = state_changes(monitor, target, names.subscription, args.changes)
        for what in ("disabled", "enabled"):
            values = [s for w, s in changes if w == what]
            print(summary(f"subscription {what} -> dashboard shows it", values, "s"))
        worst = max(s for _, s in changes)
        print(f"state change visible within {worst:.2f} s at worst (target <= 2 s: {'met' if worst <= 2 else 'MISSED'}); "
              f"dashboard polls every {DASHBOARD_POLL_SECONDS:g} s")
        target.clean_replication()
        source.clean_replication()
    shutil.rmtree(os.environ["PGTIDE_STATE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
