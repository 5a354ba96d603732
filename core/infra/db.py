"""Opening connections, and turning libpq's failures into errors a user can act on."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from .endpoint import Endpoint
from .errors import ConnectError, InputError

# (pattern in libpq's message, one-line cause, remedy). First match wins.
_CONNECT_FAILURES: list[tuple[str, str, str]] = [
    (
        r"password authentication failed|authentication failed for user",
        "the server rejected the password for user {user}",
        "Check the password; pgtide also reads it from ~/.pgpass, PGPASSWORD or the OS keyring.",
    ),
    (
        r"no password supplied|fe_sendauth",
        "the server asks for a password and none was given for user {user}",
        "Put the password in the URL, in ~/.pgpass (host:port:db:user:password, mode 0600), "
        "in PGPASSWORD, or save it in the keyring with a profile.",
    ),
    (
        r"no pg_hba\.conf entry",
        "the server's pg_hba.conf does not allow user {user} from this machine",
        "Ask the server's administrator to add a pg_hba.conf entry for this client, or try sslmode=require.",
    ),
    (
        r"database \".*\" does not exist",
        "database {dbname} does not exist on {host}:{port}",
        "Check the database name, or create it first.",
    ),
    (
        r"role \".*\" does not exist",
        "role {user} does not exist on {host}:{port}",
        "Check the user name in the connection string.",
    ),
    (
        r"could not translate host name|Name or service not known|nodename nor servname",
        "host name {host} cannot be resolved",
        "Check the host name for typos and that this machine's DNS can resolve it.",
    ),
    (
        r"Connection refused",
        "nothing accepts connections at {host}:{port}",
        "Check that the server is running and listening on that address and port (listen_addresses, firewall).",
    ),
    (
        r"timeout expired|timed out",
        "no answer from {host}:{port} within the connect timeout",
        "Check the network path and firewall to the server, or raise connect_timeout in the connection string.",
    ),
    (
        r"SSL|certificate",
        "the TLS handshake with {host}:{port} failed",
        "Check sslmode and the certificates (sslrootcert, sslcert, sslkey) in the connection string.",
    ),
    (
        r"too many connections|remaining connection slots",
        "the server at {host}:{port} has no free connection slots",
        "Close idle connections or raise max_connections on the server, then retry.",
    ),
    (
        r"the database system is (starting up|shutting down|in recovery mode)",
        "the server at {host}:{port} is not accepting connections right now",
        "Wait until it has finished starting or recovering, then retry.",
    ),
]


#: What psycopg's execute() takes from pgtide: composed SQL, never a bare string of user text.
Query = sql.SQL | sql.Composed


def describe_connect_failure(endpoint: Endpoint, exc: BaseException) -> ConnectError:
    """A ConnectError with a specific cause and remedy, and nothing secret in it."""
    message = endpoint.redact(str(exc))
    facts = {"user": repr(endpoint.user), "dbname": repr(endpoint.dbname), "host": endpoint.host, "port": endpoint.port}
    for pattern, cause, remedy in _CONNECT_FAILURES:
        if re.search(pattern, message, re.IGNORECASE):
            return ConnectError(f"{endpoint.redacted()}: {cause.format(**facts)}", remedy)
    first_line = next((line.strip() for line in message.splitlines() if line.strip()), "unknown error")
    return ConnectError(
        f"{endpoint.redacted()}: {first_line}",
        "Check the connection string and that the server is reachable (try psql with the same settings).",
    )


def connect(endpoint: Endpoint, *, autocommit: bool = True, pooled: bool = True,
            **extra: Any) -> psycopg.Connection[Any]:
    """A connection with keepalives and a connect timeout, or a ConnectError.

    Inside :func:`connection_pools` (every CLI command, the app), a plain autocommit
    connection comes from that command's pool for this server and database, and closing it
    (``with connect(...) as conn:``) hands it back with its settings RESET and its
    transaction attributes at their defaults, so a borrower may pin settings and read in
    REPEATABLE READ, READ ONLY (the monitor and verify do). Sessions that must outlive the
    command or carry connect-time ``extra`` settings — the copy's, replication's — pass
    ``pooled=False`` or are never pooled.
    """
    pools = _active_pools
    if pools is not None and pooled and autocommit and not extra:
        return pools.connection(endpoint)
    return _open(endpoint, autocommit=autocommit, **extra)


def _open(endpoint: Endpoint, *, autocommit: bool = True, connection_class: type[psycopg.Connection[Any]] | None = None,
          **extra: Any) -> psycopg.Connection[Any]:
    try:
        # UTF8 whatever the database's encoding: pgtide's own text (names, filters) is
        # Unicode, and JSON results (EXPLAIN) are decoded as UTF-8; the server converts.
        return (connection_class or psycopg.Connection).connect(
            **endpoint.connect_kwargs(**{"client_encoding": "utf8", **extra}), autocommit=autocommit)
    except psycopg.ProgrammingError as exc:
        raise InputError(
            f"{endpoint.redacted()}: {endpoint.redact(str(exc)).splitlines()[0]}",
            "Check the connection parameters.",
            title="Bad connection string",
        ) from None
    except psycopg.OperationalError as exc:
        raise describe_connect_failure(endpoint, exc) from None


# -- pooled connections ----------------------------------------------------------------------------


class _PooledConnection(psycopg.Connection[Any]):
    """A pool member used the way every helper uses a connection, ``with connect(...) as conn:``.

    psycopg leaves a pooled connection open at the end of a ``with`` block (it expects
    ``pool.connection()``); closing it here hands it back, since the pools close_returns.
    """

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        super().__exit__(exc_type, exc_val, exc_tb)
        self.close()

    def close(self) -> None:
        if not self.closed and getattr(self, "_pool", None) is not None:
            try:
                if self.info.transaction_status != TransactionStatus.IDLE:
                    self.rollback()
                # A borrower may have changed how transactions start (verify reads in REPEATABLE
                # READ, READ ONLY): the next one gets the pool's autocommit and the server's
                # defaults. First, so RESET ALL below runs outside any transaction.
                self.autocommit = True
                self.isolation_level = None
                self.read_only = None
                self.deferrable = None
                # A borrower may have changed session settings (search_path, timeouts,
                # quoting pins): the next one starts from the connection's defaults. Done here,
                # not by the pool's reset hook, so the member is back (and counted available)
                # before close() returns.
                self.execute("RESET ALL")
            except psycopg.Error:
                pass  # broken: the pool discards it when it comes back
        super().close()


class ConnectionPools:
    """One small pool per server and database, for the short queries of one command.

    Over TLS to a distant provider each new session costs one to three round trips before
    its first query; one init used to open a session per helper (version, existence,
    objects, catalog, each check). A pool's new members are opened here, in the borrowing
    thread, and handed to the pool as it grows: a server that refuses says why at once
    (a pool left to connect on its own retries until its timeout), and nothing connects in
    the background. A member that broke is discarded when it comes back.
    """

    def __init__(self, *, max_size: int = 4, max_idle: float = 60.0) -> None:
        self.max_size = max_size
        self.max_idle = max_idle
        self._pools: dict[str, tuple[ConnectionPool[psycopg.Connection[Any]], list[psycopg.Connection[Any]]]] = {}
        self._lock = threading.Lock()
        #: Connections opened for the pools (what connections_bench and the tests count).
        self.opened = 0

    def connection(self, endpoint: Endpoint) -> psycopg.Connection[Any]:
        key = endpoint.conninfo(include_password=True, client_encoding="utf8")
        with self._lock:
            if key not in self._pools:
                self._pools[key] = self._new_pool(key)
            pool, seeds = self._pools[key]
        for _attempt in range(self.max_size + 1):
            stats = pool.get_stats()
            if not stats.get("pool_available", 0):
                if stats.get("pool_size", 0) >= self.max_size:
                    break  # every member is out: waiting for one would stall the borrower
                fresh = _open(endpoint, connection_class=_PooledConnection)
                with self._lock:
                    self.opened += 1
                    seeds.append(fresh)
            try:
                conn = pool.getconn(timeout=_connect_timeout(endpoint) + 2.0)
            except PoolTimeout:
                break
            # One round trip proves an idle member still works: DROP DATABASE ... WITH (FORCE),
            # a restart or an idle timeout may have ended it since it came back.
            try:
                conn.execute("")
            except psycopg.Error:
                conn.close()  # back to the pool, which discards it as broken
                continue
            return conn
        # Every member busy (or broken): the borrower gets a connection of its own, closed after use.
        conn = _open(endpoint)
        with self._lock:
            self.opened += 1
        return conn

    def _new_pool(self, key: str) -> tuple[ConnectionPool[psycopg.Connection[Any]], list[psycopg.Connection[Any]]]:
        seeds: list[psycopg.Connection[Any]] = []
        lock = self._lock

        class _Seeded(_PooledConnection):
            """The pool grows by the connections :meth:`connection` opened for it."""

            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:  # type: ignore[override]
                with lock:
                    if seeds:
                        return seeds.pop()
                # Only when a member was discarded while nobody was borrowing: connect then.
                return _PooledConnection.connect(conninfo, **kwargs)

        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            key, connection_class=_Seeded, kwargs={"autocommit": True}, min_size=0, max_size=self.max_size,
            max_idle=self.max_idle, close_returns=True, open=True, name="pgtide")
        return pool, seeds

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool, seeds in pools:
            pool.close(timeout=5.0)
            for spare in seeds:
                spare.close()


def _connect_timeout(endpoint: Endpoint) -> float:
    try:
        return float(endpoint.connect_kwargs().get("connect_timeout") or 10)
    except ValueError:
        return 10.0


_active_pools: ConnectionPools | None = None


@contextmanager
def connection_pools(**settings: Any) -> Iterator[ConnectionPools]:
    """Pool the short-lived connections opened inside this block (one command, or the app)."""
    global _active_pools
    previous, pools = _active_pools, ConnectionPools(**settings)
    _active_pools = pools
    try:
        yield pools
    finally:
        _active_pools = previous
        pools.close()
