"""What a server is and what our role may do on it: the facts every later step checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..infra.db import connect
from ..infra.endpoint import Endpoint


@dataclass(frozen=True)
class ServerInfo:
    version_num: int
    version: str
    wal_level: str
    is_superuser: bool
    can_replicate: bool
    can_create_database: bool
    user: str
    database: str

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def summary(self) -> str:
        privileges = [
            name
            for name, has in (
                ("superuser", self.is_superuser),
                ("replication", self.can_replicate),
                ("createdb", self.can_create_database),
            )
            if has
        ]
        return (
            f"PostgreSQL {self.version.split()[0]}, wal_level={self.wal_level}, role {self.user} "
            f"({', '.join(privileges) or 'no special privileges'})"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "major": self.major}


_REPLICATION_SQL = """
SELECT r.rolsuper OR r.rolreplication
       OR EXISTS (SELECT 1 FROM pg_roles g
                  WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'MEMBER'))
FROM pg_roles r WHERE r.rolname = current_user
"""


def probe(endpoint: Endpoint) -> ServerInfo:
    """Connect once and read the server's version, wal_level and our role's key privileges."""
    with connect(endpoint) as conn:
        row = conn.execute(
            """
            SELECT current_setting('server_version_num')::int, current_setting('server_version'),
                   current_setting('wal_level'), r.rolsuper, r.rolcreatedb OR r.rolsuper,
                   current_user, current_database()
            FROM pg_roles r WHERE r.rolname = current_user
            """
        ).fetchone()
        replication = conn.execute(_REPLICATION_SQL).fetchone()
    assert row is not None and replication is not None
    version_num, version, wal_level, superuser, createdb, user, database = row
    return ServerInfo(
        version_num=version_num,
        version=version,
        wal_level=wal_level,
        is_superuser=bool(superuser),
        can_replicate=bool(replication[0]),
        can_create_database=bool(createdb),
        user=user,
        database=database,
    )
