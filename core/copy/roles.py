"""Roles (the cluster-wide "globals") copied to the target, idempotently and safely.

Read from the source's catalogs as structured rows — never by matching lines of a
``pg_dumpall`` script, where a role named ``"x; DROP ..."`` or a quoted name with spaces
would be misread. What is copied: the role, LOGIN/INHERIT/CREATEDB/CREATEROLE, connection
limit, validity, and memberships. What is not: passwords (never leave the source),
SUPERUSER/REPLICATION/BYPASSRLS (privilege escalation on the target is not ours to grant),
provider-reserved roles and tablespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.events import Emit, Log

# Roles that managed services create for themselves; the target has its own.
RESERVED_PREFIXES = ("pg_", "rds", "azure_", "cloudsql", "alloydb", "neon_", "aiven", "google_", "supabase_")
RESERVED_NAMES = frozenset({"postgres", "rdsadmin", "azuresu", "cloud_admin", "neon_superuser", "supabase_admin"})


@dataclass(frozen=True)
class Role:
    name: str
    login: bool
    inherit: bool
    create_db: bool
    create_role: bool
    connection_limit: int
    valid_until: str | None


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


def read_roles(source: Endpoint) -> tuple[list[Role], list[tuple[str, str]]]:
    """Copyable roles and (role, member) memberships between them."""
    with connect(source) as conn:
        rows = conn.execute(
            """
            SELECT rolname, rolcanlogin, rolinherit, rolcreatedb, rolcreaterole, rolconnlimit,
                   rolvaliduntil::text
            FROM pg_roles WHERE oid <> 10 ORDER BY rolname
            """
        ).fetchall()
        members = conn.execute(
            """
            SELECT r.rolname, m.rolname FROM pg_auth_members am
            JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
            ORDER BY 1, 2
            """
        ).fetchall()
    roles = [Role(*row) for row in rows if not is_reserved(row[0])]
    names = {role.name for role in roles}
    return roles, [(role, member) for role, member in members if role in names and member in names]


def copy_roles(source: Endpoint, target: Endpoint, emit: Emit) -> int:
    """Create missing roles on the target (no passwords); returns how many were created."""
    roles, memberships = read_roles(source)
    created = 0
    with connect(target) as conn:
        existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}
        for role in roles:
            if role.name in existing:
                continue
            options = [
                "LOGIN" if role.login else "NOLOGIN",
                "INHERIT" if role.inherit else "NOINHERIT",
                "CREATEDB" if role.create_db else "NOCREATEDB",
                "CREATEROLE" if role.create_role else "NOCREATEROLE",
            ]
            statement = sql.SQL("CREATE ROLE {} WITH {} CONNECTION LIMIT {}").format(
                sql.Identifier(role.name), sql.SQL(" ".join(options)), sql.Literal(role.connection_limit)
            )
            if role.valid_until and role.valid_until != "infinity":
                statement = sql.SQL("{} VALID UNTIL {}").format(statement, sql.Literal(role.valid_until))
            conn.execute(statement)
            created += 1
            if role.login:
                emit(Log("warning", f"role {role.name} created on the target without a password: set one there"))
        granted = {
            (r, m)
            for r, m in conn.execute(
                "SELECT r.rolname, m.rolname FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid "
                "JOIN pg_roles m ON m.oid = am.member"
            )
        }
        for role_name, member in memberships:
            if (role_name, member) not in granted:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role_name), sql.Identifier(member)))
    emit(Log("info", f"roles: {created} created, {len(roles) - created} already present"))
    return created
