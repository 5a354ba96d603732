"""How many server connections one ``pgtide init`` of a three-table database opens.

Usage: python tests/benchmarks/connections_bench.py [--unpooled]

Starts two throwaway clusters with ``log_connections = on``, creates a database of three
small tables (one filtered, one schema-only), runs validate and init in-process as the CLI
does, and counts the "connection authorized" lines each server logged, by kind: pgtide's
own sessions, the replication connection that holds the snapshot, the client tools (psql,
pg_dump, pg_restore) and the subscription's workers. Over TLS to a distant provider each
new session costs one to three round trips before the first query.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from _bench import LOGICAL_SETTINGS, PgCluster, machine_bindir, running_cluster

from pgtide.core.engine import migrate
from pgtide.core.engine.validate import validate
from pgtide.core.infra.db import connection_pools
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.selection import Selection

DB = "three"


def _kind(line: str) -> str:
    if "replication=" in line or "replication connection" in line:
        return "replication"
    app = re.search(r"application_name=(\S+)", line)
    name = app.group(1) if app else ""
    if name in ("psql", "pg_dump", "pg_restore"):
        return "client tools"
    if name.startswith(("pg_", "pgtide_subscription")) or "subscription" in name:
        return "subscription workers"
    return "pgtide sessions"


def _count(cluster: PgCluster, mark: int) -> Counter[str]:
    text = cluster.logfile.read_text(errors="replace")[mark:]
    return Counter(_kind(line) for line in text.splitlines() if "connection authorized" in line)


def main() -> int:
    settings = {**LOGICAL_SETTINGS, "log_connections": "on"}
    with tempfile.TemporaryDirectory() as state, running_cluster(machine_bindir(), **settings) as source, \
            running_cluster(machine_bindir(), **settings) as target:
        import os

        os.environ["PGTIDE_STATE_DIR"] = state
        source.execute(f"CREATE DATABASE {DB}")
        source.execute("CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, 'x' FROM "
                       "generate_series(1, 1000) g; CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT "
                       "generate_series(1, 1000); CREATE TABLE c (id int PRIMARY KEY, note text)", dbname=DB)
        plan = Plan(Endpoint.parse(source.url(dbname=DB), env={}), Endpoint.parse(target.url(dbname=DB), env={}),
                    Selection.from_cli(table_filters=["b:id <= 500"], schema_only_tables=["c"]), Options(jobs=2))
        marks = {"source": len(source.logfile.read_text(errors="replace")),
                 "target": len(target.logfile.read_text(errors="replace"))}
        pooled = "--unpooled" not in sys.argv
        with connection_pools() if pooled else nullcontext():  # type: ignore[attr-defined]
            report = validate(plan)
            assert report.ok, report.errors
            results = migrate.init(plan, scope=report.scope)
        print(f"{'pooled (as the CLI runs it)' if pooled else 'unpooled (pgtide 0.1)'}:")
        assert [r.status for r in results] == ["streaming"], results
        for side, cluster in (("source", source), ("target", target)):
            counts = _count(cluster, marks[side])
            detail = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
            print(f"{side:<7} {sum(counts.values()):4d} connections   ({detail})", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
