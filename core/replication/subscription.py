"""Pausing and resuming the apply of a migration's subscriptions (the worker's pause/resume).

``ALTER SUBSCRIPTION … DISABLE`` stops the apply worker; the slot on the source keeps every
change from then on (and retains WAL: status shows how much), so resuming loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg import sql

from ..infra.db import connect
from . import naming

if TYPE_CHECKING:
    from ..model.plan import Plan


def set_apply_enabled(plan: Plan, databases: Sequence[str], *, enabled: bool) -> list[str]:
    """Enable or disable pgtide's subscription in each database; the databases it changed."""
    changed = []
    for database in databases:
        name = naming.replication_names(plan.source, plan.target, database).subscription
        with connect(plan.target.with_dbname(database)) as conn:
            row = conn.execute("SELECT subenabled FROM pg_subscription WHERE subname = %s AND subdbid = "
                               "(SELECT oid FROM pg_database WHERE datname = current_database())", [name]).fetchone()
            if row is None or bool(row[0]) == enabled:
                continue
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} {}").format(
                sql.Identifier(name), sql.SQL("ENABLE" if enabled else "DISABLE")))
            changed.append(database)
    return changed
