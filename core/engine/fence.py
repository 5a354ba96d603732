"""Stopping the application's writes on the source for the cutover, and lifting that again.

The roles fence sets ``default_transaction_read_only = on`` for each role that holds a
session on a migrated database (``ALTER ROLE … IN DATABASE …``), then ends those sessions:
the application's reconnects get read-only transactions. It is a fence against
applications, not a security boundary — any session may ``SET default_transaction_read_only
= off``. What each role had before is recorded first, so an abort, a crash or ``--abort``
restores exactly that.

pgtide's own sessions keep writing (they drop the publication, create a reverse
subscription, lift the fence): every source connection pgtide opens after the fence passes
``-c default_transaction_read_only=off`` at startup (:func:`writable`), which outranks a
per-role-and-database default. That is the trap peers fell into: a fence on the role their
own cleanup used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import MigrationFailed
from ..infra.events import CancelToken

_READ_ONLY_OFF = "-c default_transaction_read_only=off"


def writable(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` whose sessions are never read-only by a fence's role default."""
    options = endpoint.get("options") or ""
    if _READ_ONLY_OFF in options:
        return endpoint
    return endpoint.with_params(options=f"{options} {_READ_ONLY_OFF}".strip())


@dataclass(frozen=True)
class ClientSession:
    pid: int
    role: str
    database: str
    application: str
    client: str
    state: str
    #: The session holds a transaction id: it wrote, and its commit is still to come.
    writing: bool
    superuser: bool

    def describe(self) -> str:
        app = f" ({self.application})" if self.application else ""
        return f"pid {self.pid} {self.role}@{self.database}{app} from {self.client or 'local socket'}, {self.state}"


# Client backends of the given databases, not pgtide's own: its sessions carry application
# name pgtide* and run as the migration role (the subscription's walsender is not a client
# backend at all).
_SESSIONS_SQL = """
SELECT a.pid, a.usename, a.datname, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''),
       coalesce(a.state, ''), a.backend_xid IS NOT NULL, coalesce(r.rolsuper, false)
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.backend_type = 'client backend' AND a.datname = ANY(%(databases)s) AND a.pid <> pg_backend_pid()
  AND NOT (a.usename = current_user AND a.application_name LIKE 'pgtide%%')
ORDER BY a.datname, a.usename, a.pid
"""


def client_sessions(conn: psycopg.Connection[Any], databases: Sequence[str]) -> list[ClientSession]:
    return [ClientSession(*row) for row in conn.execute(_SESSIONS_SQL, {"databases": list(databases)})]


def prepared_transactions(conn: psycopg.Connection[Any], databases: Sequence[str]) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT gid FROM pg_prepared_xacts WHERE database = ANY(%s) ORDER BY prepared", [list(databases)])]


def may_fence(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
    """(may end other roles' sessions, may set other roles' defaults) for the current role."""
    row = conn.execute(
        "SELECT r.rolsuper OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'), r.rolsuper OR r.rolcreaterole "
        "FROM pg_roles r WHERE r.rolname = current_user").fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


@dataclass(frozen=True)
class FencedRole:
    role: str
    database: str
    #: The role's own setting in that database before the fence (None: it had none).
    previous: str | None
    #: When the fence went up (the server's clock, epoch seconds): sessions the role opened
    #: since are read-only for their whole life, so lifting the fence ends them too.
    fenced_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PREVIOUS_SQL = """
SELECT (SELECT split_part(c, '=', 2) FROM unnest(s.setconfig) c WHERE c LIKE 'default\\_transaction\\_read\\_only=%%')
FROM pg_db_role_setting s
WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s)
"""


def read_previous(conn: psycopg.Connection[Any], role: str, database: str) -> FencedRole:
    """What the role has in that database now, and the server's clock: the entry to record
    *before* the fence goes up."""
    row = conn.execute(_PREVIOUS_SQL, [role, database]).fetchone()
    now = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert now is not None
    return FencedRole(role, database, row[0] if row else None, float(now[0]))


def fence_role(conn: psycopg.Connection[Any], role: str, database: str) -> None:
    conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on").format(
        sql.Identifier(role), sql.Identifier(database)))


def unfence_role(conn: psycopg.Connection[Any], fenced: FencedRole) -> None:
    target = sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(fenced.role), sql.Identifier(fenced.database))
    if fenced.previous is None:
        conn.execute(sql.SQL("{} RESET default_transaction_read_only").format(target))
    else:
        conn.execute(sql.SQL("{} SET default_transaction_read_only = {}").format(target, sql.Literal(fenced.previous)))


def end_sessions(conn: psycopg.Connection[Any], sessions: Sequence[ClientSession]) -> int:
    ended = 0
    for session in sessions:
        row = conn.execute("SELECT pg_terminate_backend(%s)", [session.pid]).fetchone()
        ended += bool(row and row[0])
    return ended


class RolesFence:
    """The roles fence for a set of databases on one source server."""

    def __init__(self, source: Endpoint, databases: Sequence[str], *,
                 record: Callable[[list[FencedRole]], None]) -> None:
        # ALTER ROLE is cluster-wide: any database of the server will do; "postgres" is the
        # one every other command uses too.
        self.admin = writable(source.with_dbname("postgres"))
        self.databases = list(databases)
        self.fenced: list[FencedRole] = []
        self._record = record

    def apply(self, *, rounds: int = 5) -> list[ClientSession]:
        """Fence every role with a session on the databases and end those sessions, until no
        session of an unfenced role is left (an application may connect with a new role while
        this runs). Returns the sessions ended."""
        ended: list[ClientSession] = []
        with connect(self.admin, pooled=False) as conn:
            for _ in range(rounds):
                done = {(f.role, f.database) for f in self.fenced}
                new = sorted({(s.role, s.database) for s in client_sessions(conn, self.databases)} - done)
                if not new:
                    break
                for role, database in new:
                    # Recorded, with what the role had, before it is applied: an interrupt in
                    # between leaves a record that restores a value that never changed
                    # (harmless), never a fence nobody knows of.
                    entry = read_previous(conn, role, database)
                    self.fenced.append(entry)
                    self._record(self.fenced)
                    fence_role(conn, role, database)
                # Listed after the ALTERs: every session that began before its role's fence is
                # here; those that begin later are read-only already and are left alone.
                victims = [s for s in client_sessions(conn, self.databases) if (s.role, s.database) in set(new)]
                end_sessions(conn, victims)
                ended += victims
            fenced = {(f.role, f.database) for f in self.fenced}
            remaining = [s for s in client_sessions(conn, self.databases) if (s.role, s.database) not in fenced]
        if remaining:
            raise MigrationFailed(
                "sessions kept arriving under new roles while writes were being fenced: "
                + "; ".join(s.describe() for s in remaining[:5]),
                "Stop the application (or use --fence pgbouncer), then run the cutover again.",
                title="Fence did not hold",
            )
        return ended

    def check_holding(self) -> None:
        """Just before the switch: no session of a role the fence does not cover (a cron job,
        an ETL that connected after the fence) — its writes after the drain would be lost."""
        fenced = {(f.role, f.database) for f in self.fenced}
        with connect(self.admin, pooled=False) as conn:
            outside = [s for s in client_sessions(conn, self.databases) if (s.role, s.database) not in fenced]
        if outside:
            raise MigrationFailed(
                "sessions of roles the fence does not cover connected after it went up: "
                + "; ".join(s.describe() for s in outside[:5]),
                "Stop those clients (or let the next run fence their roles too), then run the cutover again.",
                title="Fence did not hold")

    def lift(self, fenced: Sequence[FencedRole] | None = None) -> list[FencedRole]:
        """Restore each fenced role's previous setting; returns what was restored."""
        entries = list(self.fenced if fenced is None else fenced)
        with connect(self.admin, pooled=False) as conn:
            for entry in entries:
                unfence_role(conn, entry)
                # Sessions opened under the fence keep its read-only default until they end.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND usename = %s AND datname = %s AND pid <> pg_backend_pid() "
                    "AND backend_start >= to_timestamp(%s) AND application_name NOT LIKE 'pgtide%%'",
                    [entry.role, entry.database, entry.fenced_at or 0.0])
        self.fenced = [f for f in self.fenced if f not in entries]
        return entries


def wait_for_quiet(source: Endpoint, databases: Sequence[str], *, timeout: float, cancel: CancelToken,
                   poll: float = 0.02) -> None:
    """Until no session of the databases holds a write transaction and none is prepared."""
    deadline = time.monotonic() + timeout
    with connect(writable(source.with_dbname("postgres")), pooled=False) as conn:
        while True:
            writers = [s for s in client_sessions(conn, databases) if s.writing]
            prepared = prepared_transactions(conn, databases)
            if not writers and not prepared:
                return
            if time.monotonic() >= deadline:
                what = [s.describe() for s in writers[:5]] + [f"prepared transaction {gid!r}" for gid in prepared[:5]]
                raise MigrationFailed(
                    f"writes still open on the source after {timeout:.0f} s: " + "; ".join(what),
                    "Let those transactions finish (or end them: SELECT pg_terminate_backend(pid); "
                    "COMMIT PREPARED / ROLLBACK PREPARED), then run the cutover again.",
                    title="Writes did not stop",
                )
            cancel.check()
            cancel.wait(poll)
