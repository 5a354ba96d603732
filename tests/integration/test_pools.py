"""The per-command connection pools: reuse, no leaks between borrowers, no stalls, no dead members."""

from __future__ import annotations

import psycopg
from pgharness import PgCluster
from psycopg.pq import TransactionStatus

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


def test_a_member_comes_back_with_default_transaction_attributes(source_cluster: PgCluster) -> None:
    """A borrower that read in REPEATABLE READ, READ ONLY, DEFERRABLE, outside autocommit (as
    verify does) leaves none of it to the next borrower of the same session."""
    endpoint = Endpoint.parse(source_cluster.url(), env={})
    with connection_pools() as pools:
        conn = connect(endpoint)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.deferrable = True
        conn.autocommit = False
        conn.execute("SET application_name = 'borrower'")
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        conn.close()  # in a transaction, with the attributes set: handed back all the same

        with connect(endpoint) as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid  # type: ignore[index]
            assert (conn.autocommit, conn.isolation_level, conn.read_only, conn.deferrable) == (
                True, None, None, None)
            assert conn.info.transaction_status == TransactionStatus.IDLE
            with conn.transaction():
                assert conn.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
                assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
                assert conn.execute("SHOW transaction_deferrable").fetchone() == ("off",)
                conn.execute("CREATE TEMPORARY TABLE written (i int)")  # a read-only session would refuse
            assert conn.execute("SHOW application_name").fetchone() != ("borrower",)
        assert pools.opened == 1
