"""Which servers a migration joins, as the servers themselves say — not as they were typed.

``localhost``, ``127.0.0.1`` and a ``service=`` name of the same server used to be three
migrations, because the names of the replication objects hashed the host as typed; status
and teardown under another spelling found nothing while the real slot kept WAL on the source.

A server's identity is its ``system_identifier`` (``pg_control_system()``, set by initdb and
kept by every copy of the cluster): the same under any spelling, any proxy, any DNS name.
Two fallbacks, chosen so that neither merges two migrations that must stay apart:

- a provider that hides ``pg_control_system()``: the address the server sees the connection
  arrive at (``inet_server_addr()`` and port) — the same for every spelling that reaches the
  server the same way;
- clones share a system identifier (a restored base backup, a Neon branch, a provider's
  snapshot restore): when source and target report the same one, both identities also carry
  that address, so two clones of one cluster stay two servers.

Resolving needs both servers. When one is down (teardown with the target stopped), the
spelling seen last time is looked up in a small index kept next to the job records.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import ConnectError, PgtideError
from ..infra.paths import state_dir


@dataclass(frozen=True)
class ServerIdentity:
    #: ``pg_control_system().system_identifier``, or None where the provider hides it.
    system_identifier: str | None
    #: Where the server saw this connection arrive: "addr:port", or "socket:port".
    address: str

    def key(self, *, with_address: bool = False) -> str:
        if self.system_identifier is None:
            return f"address:{self.address}"
        return f"sysid:{self.system_identifier}" + (f"@{self.address}" if with_address else "")


def read_identity(conn: psycopg.Connection[Any]) -> ServerIdentity:
    row = conn.execute(
        "SELECT host(inet_server_addr()), inet_server_port(), current_setting('port')").fetchone()
    assert row is not None
    address = f"{row[0]}:{row[1]}" if row[0] is not None else f"socket:{row[2]}"
    try:
        with conn.transaction():
            found = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        sysid = found[0] if found else None
    except psycopg.errors.InsufficientPrivilege:
        sysid = None
    return ServerIdentity(sysid, address)


def server_identity(endpoint: Endpoint) -> ServerIdentity:
    with connect(endpoint, application_name="pgtide") as conn:
        return read_identity(conn)


def digest(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def pair_id(source: ServerIdentity, target: ServerIdentity) -> str:
    """The migration id of "this source server to that target server"."""
    clones = source.system_identifier is not None and source.system_identifier == target.system_identifier
    return digest(source.key(with_address=clones), target.key(with_address=clones))


def spelling_id(source: Endpoint, target: Endpoint) -> str:
    """The id pgtide 0.1 gave a migration: the hosts and ports as typed."""
    return digest(source.host, source.port, target.host, target.port)


# -- resolving, with a memory of spellings for when a server is down ------------------------------

_lock = threading.Lock()
_resolved: dict[str, str] = {}


def _index_path() -> Path:
    return state_dir() / "jobs" / "spellings.json"


def _read_index() -> dict[str, str]:
    try:
        data = json.loads(_index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _remember(spelling: str, migration: str) -> None:
    from ..jobs.store import write_json

    index = _read_index()
    if index.get(spelling) != migration:
        index[spelling] = migration
        write_json(_index_path(), index)


def resolve_migration_id(source: Endpoint, target: Endpoint) -> str:
    """This migration's id, from the servers' identities (cached per spelling in this process).

    A migration that pgtide 0.1 recorded under the spelling id keeps that id: its replication
    objects are named after it.
    """
    from ..jobs.store import JobStore

    spelling = spelling_id(source, target)
    with _lock:
        if spelling in _resolved:
            return _resolved[spelling]
    try:
        # Any database of a cluster tells its identity; "postgres" is the one every server has.
        migration = pair_id(server_identity(source.with_dbname("postgres")),
                            server_identity(target.with_dbname("postgres")))
    except PgtideError as exc:
        known = _read_index().get(spelling)
        if known is None:
            if JobStore.exists(spelling):
                known = spelling
            elif isinstance(exc, ConnectError):
                raise ConnectError(
                    exc.cause + " — and this spelling of the servers was never seen with both up, so the "
                    "migration cannot be told without it", exc.remedy) from None
            else:
                raise
        migration = known
    else:
        if not JobStore.exists(migration) and JobStore.exists(spelling):
            migration = spelling  # recorded by pgtide 0.1: keep the names its objects have
        _remember(spelling, migration)
    with _lock:
        _resolved[spelling] = migration
    return migration


def forget_resolved() -> None:
    """Drop the per-process cache (tests point the state directory elsewhere between cases)."""
    with _lock:
        _resolved.clear()
