"""Names of the objects pgtide creates on the servers, derived from the migration's identity.

Every command (init, status, verify, teardown) finds the same publication, slot and
subscription again: the names depend only on which source server goes to which target
server (as the servers identify themselves: replication/identity.py), and on the database.
Two migrations of the same source to different targets therefore never collide, a rerun
finds what the last run left, and any spelling of the same servers finds the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..infra.endpoint import Endpoint
from .identity import digest, resolve_migration_id

PREFIX = "pgtide"


def _digest(*parts: str, length: int = 8) -> str:
    return digest(*parts, length=length)


def migration_id(source: Endpoint, target: Endpoint) -> str:
    """Short, stable id of "this source server to that target server", from the servers."""
    return resolve_migration_id(source, target)


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
