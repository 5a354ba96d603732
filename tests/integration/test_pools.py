"""The per-command connection pools: reuse, no leaks between borrowers, no stalls, no dead members."""

from __future__ import annotations

from pgharness import PgCluster

from pgtide.core.infra.db import connect, connection_pools
from pgtide.core.infra.endpoint import Endpoint


def test_members_are_reused_and_reset(source_cluster: PgCluster) -> None:
    endpoint = Endpoint.parse(source_cluster.url(), env={})
    with connection_pools() as pools:
        pids = set()
        for _ in range(5):
            with connect(endpoint) as conn:
                pids.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
                conn.execute("SET search_path = nowhere")
                conn.execute("SET statement_timeout = '1s'")
        assert len(pids) == 1 and pools.opened == 1
        with connect(endpoint) as conn:
            # What a borrower changed does not reach the next one.
            assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_more_borrowers_than_members_get_their_own_connection_at_once(source_cluster: PgCluster) -> None:
    endpoint = Endpoint.parse(source_cluster.url(), env={})
    with connection_pools(max_size=2) as pools:
        held = [connect(endpoint) for _ in range(4)]
        try:
            pooled = [conn for conn in held if getattr(conn, "_pool", None) is not None]
            assert len(pooled) == 2 and pools.opened == 4  # two members, two of their own: no waiting
        finally:
            for conn in held:
                conn.close()


def test_a_member_ended_by_the_server_is_replaced(source_cluster: PgCluster) -> None:
    endpoint = Endpoint.parse(source_cluster.url(), env={})
    with connection_pools() as pools:
        with connect(endpoint) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        source_cluster.execute("SELECT pg_terminate_backend(%s)", [pid])
        with connect(endpoint) as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid  # type: ignore[index]
        assert pools.opened == 2
