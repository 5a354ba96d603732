"""Materialized views: pg_restore creates them unpopulated (their rows are not data COPY
carries), so the target's are refreshed — those populated on the source — in dependency
order: a view over another view refreshes after it (also through plain views between them).
"""

from __future__ import annotations

from collections.abc import Callable
from graphlib import TopologicalSorter

from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint

_POPULATED_SQL = "SELECT schemaname, matviewname FROM pg_matviews WHERE ispopulated"

# Every view and materialized view with the relations its rewrite rule reads.
_DEPENDS_SQL = """
SELECT n.nspname, c.relname, c.relkind = 'm',
       coalesce(array_agg(DISTINCT d.refobjid::int) FILTER (WHERE d.refobjid IS NOT NULL), '{}'), c.oid::int
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_rewrite r ON r.ev_class = c.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
GROUP BY c.oid, n.nspname, c.relname, c.relkind
"""


def refresh_order(views: list[tuple[str, str, bool, list[int], int]]) -> list[tuple[str, str]]:
    """Materialized views, each after every materialized view it reads (directly or through
    plain views). Pure: ``views`` rows are (schema, name, is_materialized, reads, oid)."""
    by_oid = {oid: (schema, name, materialized, set(reads)) for schema, name, materialized, reads, oid in views}

    def matviews_read(oid: int, seen: set[int]) -> set[int]:
        found: set[int] = set()
        for ref in by_oid[oid][3]:
            if ref in seen or ref not in by_oid:
                continue
            seen.add(ref)
            found |= {ref} if by_oid[ref][2] else matviews_read(ref, seen)
        return found

    graph = {oid: matviews_read(oid, {oid}) for oid, entry in by_oid.items() if entry[2]}
    return [(by_oid[oid][0], by_oid[oid][1]) for oid in TopologicalSorter(graph).static_order()]


def refresh_matviews(source: Endpoint, target: Endpoint,
                     on_refresh: Callable[[str], None] | None = None) -> list[str]:
    """REFRESH, on the target, every materialized view populated on the source; returns their names."""
    with connect(source) as conn:
        populated = {(schema, name) for schema, name in conn.execute(_POPULATED_SQL)}
    if not populated:
        return []
    done: list[str] = []
    with connect(target) as conn:
        rows = [(s, n, m, list(r), o) for s, n, m, r, o in conn.execute(_DEPENDS_SQL)]
        for schema, name in refresh_order(rows):
            if (schema, name) not in populated:
                continue
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)))
            done.append(f"{schema}.{name}")
            if on_refresh:
                on_refresh(done[-1])
    return done
