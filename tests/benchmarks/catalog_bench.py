"""How long catalog discovery takes for a database with many tables (target: 10,000 in < 1 s).

Usage: python tests/benchmarks/catalog_bench.py [--tables 10000]

Baselines measured in the same run on the same cluster:
- floor: fetching the raw pg_class + pg_attribute rows of those tables (no joins, no sizes);
- naive: one catalog query per table (what a per-table loop costs), timed on a sample and
  scaled to the full count.
"""

from __future__ import annotations

import argparse

from _bench import LOGICAL_SETTINGS, machine_bindir, median_time, running_cluster

from pgtide.core.catalog.discovery import discover_database
from pgtide.core.infra.endpoint import Endpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, default=10_000)
    args = parser.parse_args()
    with running_cluster(machine_bindir(), **LOGICAL_SETTINGS, max_locks_per_transaction="1024") as cluster:
        cluster.create_database("bench")
        with cluster.connect("bench") as conn:
            conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
            for start in range(0, args.tables, 1000):
                conn.execute(
                    f"""
                    DO $$ BEGIN
                    FOR i IN {start}..{min(start + 1000, args.tables) - 1} LOOP
                        EXECUTE format('CREATE TABLE %I (id bigint PRIMARY KEY, parent_id int REFERENCES parent,
                                        created_at timestamptz, payload text)', 't_' || i);
                    END LOOP; END $$;
                    """
                )
            conn.execute("ANALYZE")
        endpoint = Endpoint.parse(cluster.url(dbname="bench"), env={})

        seconds, catalog = median_time(lambda: discover_database(endpoint))
        assert len(catalog.tables) == args.tables + 1

        def floor() -> int:
            with cluster.connect("bench") as conn:
                rows = conn.execute("SELECT * FROM pg_class WHERE relkind = 'r'").fetchall()
                rows += conn.execute("SELECT * FROM pg_attribute WHERE attnum > 0").fetchall()
            return len(rows)

        floor_seconds, _ = median_time(floor)

        sample = min(500, args.tables)

        def naive() -> None:
            with cluster.connect("bench") as conn:
                for i in range(sample):
                    conn.execute(
                        "SELECT pg_total_relation_size(c.oid), c.reltuples, "
                        "(SELECT array_agg(attname) FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0) "
                        "FROM pg_class c WHERE c.relname = %s",
                        [f"t_{i}"],
                    ).fetchall()

        naive_seconds = median_time(naive, repeat=1)[0] * args.tables / sample

    print(f"tables discovered:          {len(catalog.tables)}")
    print(f"pgtide discover_database:   {seconds:.3f} s   (target < 1.0 s: {'met' if seconds < 1.0 else 'MISSED'})")
    print(f"floor (raw catalog rows):   {floor_seconds:.3f} s   ratio {seconds / floor_seconds:.2f}x")
    print(f"naive (one query a table):  {naive_seconds:.3f} s   ratio {seconds / naive_seconds:.2f}x")


if __name__ == "__main__":
    main()
