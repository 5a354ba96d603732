"""Names of the objects pgtide creates on the servers, derived from the plan alone.

Every command (init, status, verify, teardown) finds the same publication, slot and
subscription again without a registry: the names depend only on which source role/server
goes to which target server, and on the database. Two migrations of the same source to
different targets therefore never collide, and a rerun finds what the last run left.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..infra.endpoint import Endpoint

PREFIX = "pgtide"


def _digest(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def migration_id(source: Endpoint, target: Endpoint) -> str:
    """Short, stable id of "this source server to that target server"."""
    return _digest(source.host, source.port, target.host, target.port)


@dataclass(frozen=True)
class ReplicationNames:
    """Publication (source db), slot (source cluster), subscription (target db)."""

    publication: str
    slot: str
    subscription: str


def replication_names(source: Endpoint, target: Endpoint, database: str) -> ReplicationNames:
    mid = migration_id(source, target)
    # Slots are cluster-wide, so they carry the database; all names stay lowercase ASCII
    # and far below 63 bytes whatever the database is called.
    slot = f"{PREFIX}_{mid}_{_digest(database)}"
    return ReplicationNames(publication=f"{PREFIX}_{mid}", slot=slot, subscription=f"{PREFIX}_{mid}_{_digest(database)}")
