"""The cutover's final verify, bounded by what was written since the last clean verify.

Inside the fence every second is downtime, and a full verify of a hot million-row table
costs one (measured: ``tests/benchmarks/cutover_bench.py``). What a clean verify proved need
not be proved again; only what changed since can differ. So each verify records, per
database and side, the oldest transaction still running when it started (the xmin of a
snapshot taken just before it) and each table's write and vacuum counters. In the fence,
for a table written since:

- every row whose ``xmin`` is at or after that horizon — on the source (the application's
  writes) *and* on the target (the apply worker's, and anyone else's) — is compared by key
  with the other side (an md5 of the row's text under fixed output settings);
- the row counts of both sides are compared, which is what catches a delete that did not
  arrive (a deleted row leaves no xmin behind).

A lost insert or update shows as a source row with a new xmin and no matching target row;
a stray write on the target as a target row with a new xmin. Where the bound cannot be
trusted the table gets the full verify instead: a filtered or time-windowed table (rows
outside the filter are legitimately absent), a key of several columns, a table vacuumed
since on either side (a VACUUM FREEZE rewrites xmin), a verify recorded without horizons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint

_HORIZON_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
_STATS_SQL = ("SELECT schemaname, relname, (n_tup_ins + n_tup_upd + n_tup_del)::bigint, "
              "(vacuum_count + autovacuum_count)::bigint FROM pg_stat_user_tables")
_KEYS_SQL = """
SELECT n.nspname, c.relname, array_agg(a.attname ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary
GROUP BY 1, 2
"""
#: The same text for the same value on both servers, whatever their defaults.
_OUTPUT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
                    "extra_float_digits": "3", "bytea_output": "hex"}


def _side_marks(endpoint: Endpoint) -> dict[str, Any]:
    with connect(endpoint) as conn:
        row = conn.execute(_HORIZON_SQL).fetchone()
        assert row is not None
        stats = {f"{s}.{t}": [int(w), int(v)] for s, t, w, v in conn.execute(_STATS_SQL)}
    return {"xmin": row[0], "stats": stats}


def marks(source: Endpoint, target: Endpoint, databases: Sequence[str]) -> dict[str, Any]:
    """What a verify records before it starts, per database: each side's horizon and counters."""
    return {database: {"source": _side_marks(source.with_dbname(database)),
                       "target": _side_marks(target.with_dbname(database))} for database in databases}


def current_stats(endpoint: Endpoint) -> dict[str, list[int]]:
    stats: dict[str, list[int]] = _side_marks(endpoint)["stats"]
    return stats


def primary_keys(endpoint: Endpoint) -> dict[str, list[str]]:
    with connect(endpoint) as conn:
        return {f"{s}.{t}": list(cols) for s, t, cols in conn.execute(_KEYS_SQL)}


@dataclass(frozen=True)
class Written:
    """The outcome of comparing one table's rows written since the last verify."""

    table: str
    compared: int
    source_rows: int
    target_rows: int
    differing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differing and self.source_rows == self.target_rows

    @property
    def key_list(self) -> str:
        shown = ", ".join(self.differing[:5])
        return shown + (f" and {len(self.differing) - 5} more" if len(self.differing) > 5 else "")


def _as_xid(xid8_text: str) -> str:
    """An xid8 as the 32-bit xid rows carry (``age()`` handles the wraparound)."""
    return str(int(xid8_text) % (1 << 32))


def _session(conn: psycopg.Connection[Any]) -> None:
    for name, value in _OUTPUT_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", [name, value])


def _rows(conn: psycopg.Connection[Any], table: sql.Composable, key: str, *, since: str | None = None,
          keys: Sequence[Any] | None = None) -> dict[Any, str]:
    ident = sql.Identifier(key)
    where: sql.Composable
    params: list[Any]
    if since is not None:
        where, params = sql.SQL("age(t.xmin) <= age(%s::xid)"), [since]
    else:
        if not keys:
            return {}
        where, params = sql.SQL("t.{} = ANY(%s)").format(ident), [list(keys)]
    query = sql.SQL("SELECT t.{}, md5(t::text) FROM {} t WHERE {}").format(ident, table, where)
    return dict(conn.execute(query, params).fetchall())


def compare_written(source: Endpoint, target: Endpoint, schema: str, name: str, key: str,
                    horizons: Mapping[str, str]) -> Written:
    """Compare, by ``key``, every row either side wrote since its horizon, and the row counts."""
    table = sql.Identifier(schema, name)
    with connect(source, pooled=False) as src, connect(target, pooled=False) as dst, \
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="pgtide-since") as both:
        # Each step on both servers at once: in the fence, their time is the downtime.
        def on_both(action: Callable[[psycopg.Connection[Any], str], Any]) -> tuple[Any, Any]:
            left, right = both.submit(action, src, "source"), both.submit(action, dst, "target")
            return left.result(), right.result()

        on_both(lambda conn, _: _session(conn))
        ours, theirs = on_both(lambda conn, side: _rows(conn, table, key, since=_as_xid(horizons[side])))
        # A key one side changed: the other side's row for it, changed or not.
        wanted = {"source": [k for k in theirs if k not in ours], "target": [k for k in ours if k not in theirs]}
        more_ours, more_theirs = on_both(lambda conn, side: _rows(conn, table, key, keys=wanted[side]))
        ours.update(more_ours)
        theirs.update(more_theirs)
        counts = on_both(lambda conn, _: int(
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]))  # type: ignore[index]
    differing = sorted((str(k) for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)), key=str)
    return Written(f"{schema}.{name}", len(ours.keys() | theirs.keys()), counts[0], counts[1], tuple(differing))
