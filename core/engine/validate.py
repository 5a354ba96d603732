"""Everything checked before a migration starts, each with what was seen and how to fix it.

Checks never change anything on either server. An ``error`` blocks init; a ``warning``
is something the user must know (it will not replicate, it needs a step at cutover).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from ..catalog.scope import DatabaseScope, Scope, build_scope
from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import ConnectError, EnvironmentProblem, InputError, PgtideError
from ..infra.events import CheckReported, Emit, discard
from ..infra.tools import find_tool
from ..model.plan import Plan
from ..model.selection import format_qualified_name

if TYPE_CHECKING:
    from ..monitor.drift import Server
    from .fixes import Fix

Status = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    observed: str
    remedy: str = ""
    database: str | None = None
    #: The remedy as statements pgtide can run (engine/fixes.py): `validate --fix`, the app's Fix button.
    fixes: tuple[Fix, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fixes"] = [{"why": f.why, "restart_needed": f.restart_needed,
                          "statements": [{"server": s.server, "database": s.database, "sql": s.sql}
                                         for s in f.statements]} for f in self.fixes]
        return data


@dataclass(frozen=True)
class ServerFacts:
    version_num: int
    settings: dict[str, str]
    is_superuser: bool
    bypasses_rls: bool
    can_replicate: bool
    can_create_database: bool
    can_create_subscription: bool
    system_identifier: str | None
    replication_slots_used: int
    wal_senders_used: int

    @property
    def major(self) -> int:
        return self.version_num // 10000


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    scope: Scope | None = None

    @property
    def ok(self) -> bool:
        return not any(c.status == "error" for c in self.checks)

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.status == "error"]

    @property
    def fixes(self) -> list[Fix]:
        """Every fix the failing or warning checks carry, in the report's order."""
        return [fix for c in self.checks if c.status != "ok" for fix in c.fixes]


_SETTINGS = ("wal_level", "max_replication_slots", "max_wal_senders", "max_logical_replication_workers",
             "max_worker_processes", "max_sync_workers_per_subscription", "max_slot_wal_keep_size")


def read_facts(endpoint: Endpoint) -> ServerFacts:
    with connect(endpoint) as conn:
        version = int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0])  # type: ignore[index]
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(_SETTINGS)]).fetchall())
        superuser, bypass, replication, createdb = conn.execute(
            """
            SELECT r.rolsuper, r.rolsuper OR r.rolbypassrls,
                   r.rolsuper OR r.rolreplication OR EXISTS (
                       SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication'
                       AND pg_has_role(current_user, g.oid, 'MEMBER')),
                   r.rolsuper OR r.rolcreatedb
            FROM pg_roles r WHERE r.rolname = current_user
            """
        ).fetchone()  # type: ignore[misc]
        # PG16 lets members of pg_create_subscription create subscriptions; before, superusers only.
        can_subscribe = bool(superuser)
        if version >= 160000:
            row = conn.execute(
                "SELECT pg_has_role(current_user, 'pg_create_subscription', 'MEMBER')").fetchone()
            can_subscribe = can_subscribe or bool(row and row[0])
        try:
            with conn.transaction():
                identifier = str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])  # type: ignore[index]
        except psycopg.Error:
            identifier = None
        slots = int(conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0])  # type: ignore[index]
        senders = int(conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0])  # type: ignore[index]
    return ServerFacts(version, settings, bool(superuser), bool(bypass), bool(replication), bool(createdb),
                       can_subscribe,
                       identifier, slots, senders)


def _reach(name: str, endpoint: Endpoint, checks: list[Check]) -> ServerFacts | None:
    try:
        facts = read_facts(endpoint)
    except PgtideError as exc:
        checks.append(Check(f"{name} reachable", "error", exc.cause, exc.remedy))
        return None
    checks.append(Check(f"{name} reachable", "ok", f"{endpoint.redacted()} (PostgreSQL {facts.version_num // 10000})"))
    return facts


def _server_checks(plan: Plan, source: ServerFacts, target: ServerFacts, databases: int) -> list[Check]:
    """The servers' checks, in the order the report lists them."""
    return [
        *_version_checks(source, target),
        _wal_level_check(source),
        *_source_capacity_checks(source, databases),
        *_target_worker_checks(plan, target, databases),
        _replication_role_check(source),
        _create_database_role_check(target),
        _create_subscription_role_check(target),
        _distinct_servers_check(plan, source, target),
    ]


def _version_checks(source: ServerFacts, target: ServerFacts) -> list[Check]:
    source_check = (
        Check("source version", "error", f"PostgreSQL {source.major}",
              "pgtide needs PostgreSQL 12 or newer on the source.") if source.version_num < 120000 else
        Check("source version", "ok", f"PostgreSQL {source.major}")
    )
    target_check = (
        Check("target version", "error", f"PostgreSQL {target.major} < source {source.major}",
              "Logical replication needs a target of the same major version or newer.")
        if target.major < source.major else
        Check("target version", "ok", f"PostgreSQL {target.major} (source {source.major})")
    )
    return [source_check, target_check]


def _wal_level_check(source: ServerFacts) -> Check:
    wal_level = source.settings.get("wal_level", "?")
    return (
        Check("source wal_level", "ok", "logical") if wal_level == "logical" else
        Check("source wal_level", "error", f"wal_level is {wal_level!r}",
              "Set wal_level = logical on the source and restart it (RDS: rds.logical_replication = 1 in "
              "the parameter group; Neon: enable logical replication in the project settings).",
              fixes=_setting_fixes(source, "source wal_level", "source", "wal_level", "logical"))
    )


def _setting_fixes(facts: ServerFacts, check: str, server: Server, setting: str,
                   value: str | int) -> tuple[Fix, ...]:
    """ALTER SYSTEM, offered where the role may run it (superuser; PG15+ also by GRANT, which
    the fix's own error then reports)."""
    from .fixes import setting_fix

    if not facts.is_superuser and facts.version_num < 150000:
        return ()
    return (setting_fix(check, server, setting, value),)


def _source_capacity_checks(source: ServerFacts, databases: int) -> list[Check]:
    """A slot and a walsender per database, beyond the ones already in use."""
    checks = []
    for setting, used, need in (
        ("max_replication_slots", source.replication_slots_used, databases),
        ("max_wal_senders", source.wal_senders_used, databases),
    ):
        limit = int(source.settings.get(setting, "0"))
        free = limit - used
        status: Status = "ok" if free >= databases else "error"
        checks.append(Check(f"source {setting}", status, f"{free} free of {limit} (need {need})",
                            "" if status == "ok" else
                            f"Raise {setting} on the source to at least {used + need} and restart it, or drop "
                            "unused replication slots.",
                            fixes=() if status == "ok" else
                            _setting_fixes(source, f"source {setting}", "source", setting, used + need)))
    return checks


def _target_worker_checks(plan: Plan, target: ServerFacts, databases: int) -> list[Check]:
    """An apply worker per database (plus table-sync workers when the server copies the rows)."""
    workers = int(target.settings.get("max_logical_replication_workers", "0"))
    need_workers = databases * (1 + (int(target.settings.get("max_sync_workers_per_subscription", "2"))
                                     if plan.options.copy_mode == "server" else 0))
    processes = int(target.settings.get("max_worker_processes", "0"))
    return [
        Check("target max_logical_replication_workers",
              "ok" if workers >= need_workers else "error", f"{workers} (need {need_workers})",
              "" if workers >= need_workers else
              f"Raise max_logical_replication_workers on the target to {need_workers} and restart it.",
              fixes=() if workers >= need_workers else _setting_fixes(
                  target, "target max_logical_replication_workers", "target", "max_logical_replication_workers",
                  need_workers)),
        Check("target max_worker_processes", "ok" if processes > need_workers else "error",
              f"{processes} (need more than {need_workers})",
              "" if processes > need_workers else
              f"Raise max_worker_processes on the target to at least {need_workers + 1} and restart it.",
              fixes=() if processes > need_workers else _setting_fixes(
                  target, "target max_worker_processes", "target", "max_worker_processes", need_workers + 1)),
    ]


def _replication_role_check(source: ServerFacts) -> Check:
    return (
        Check("source role can replicate", "ok", "REPLICATION") if source.can_replicate else
        Check("source role can replicate", "error", "the source role has neither REPLICATION nor rds_replication",
              "Run on the source: ALTER ROLE <user> WITH REPLICATION (RDS: GRANT rds_replication TO <user>).")
    )


def _create_database_role_check(target: ServerFacts) -> Check:
    return (
        Check("target role can create databases", "ok", "CREATEDB") if target.can_create_database else
        Check("target role can create databases", "error", "the target role lacks CREATEDB",
              "Run on the target: ALTER ROLE <user> CREATEDB, or create the databases beforehand.")
    )


def _create_subscription_role_check(target: ServerFacts) -> Check:
    return (
        Check("target role can create subscriptions", "ok", "yes") if target.can_create_subscription else
        Check("target role can create subscriptions", "error",
              "creating subscriptions needs superuser" + (" or pg_create_subscription" if target.major >= 16 else ""),
              "Connect to the target as a superuser" + (", or GRANT pg_create_subscription TO <user>"
                                                          if target.major >= 16 else "") + ".")
    )


def _distinct_servers_check(plan: Plan, source: ServerFacts, target: ServerFacts) -> Check:
    same_server = (source.system_identifier is not None and source.system_identifier == target.system_identifier) or (
        plan.source.host == plan.target.host and plan.source.port == plan.target.port)
    if same_server:
        return Check("source and target differ", "error",
                     "source and target are the same PostgreSQL server",
                     "Point --target at another server: migrating a database onto itself would "
                     "overwrite it.")
    return Check("source and target differ", "ok", "different servers")


def _tool_checks(source: ServerFacts) -> list[Check]:
    checks = []
    for tool in ("pg_dump", "pg_restore", "psql"):
        try:
            found = find_tool(tool, server_major=source.major)
            checks.append(Check(f"{tool} available", "ok", f"{found} ({found.path})"))
        except EnvironmentProblem as exc:
            checks.append(Check(f"{tool} available", "error", exc.cause, exc.remedy))
    return checks


def _database_checks(plan: Plan, scope: Scope, target: Endpoint, source: ServerFacts) -> list[Check]:
    with connect(target) as conn:
        available = {row[0] for row in conn.execute("SELECT name FROM pg_available_extensions")}
    checks: list[Check] = []
    for db in scope.databases:
        checks += _checks_for_database(db, available, source)
    return checks


def _checks_for_database(db: DatabaseScope, available: set[str], source: ServerFacts) -> list[Check]:
    """One source database's checks, in the order the report lists them (None: nothing to say)."""
    found = [
        _extensions_check(db, available),
        _replica_identity_check(db),
        _row_security_check(db, source),
        _unlogged_check(db),
        _sequences_check(db),
        _large_objects_check(db),
        _unpublishable_check(db),
        _ddl_check(db),
    ]
    return [check for check in found if check is not None]


def _extensions_check(db: DatabaseScope, available: set[str]) -> Check:
    missing = [ext for ext, _ in db.catalog.extensions if ext not in available]
    if missing:
        return Check("extensions available on target", "error", "missing on the target: " + ", ".join(missing),
                     "Install those extensions' packages on the target server (or ask the provider to enable them).",
                     database=db.name)
    return Check("extensions available on target", "ok",
                 ", ".join(ext for ext, _ in db.catalog.extensions) or "none", database=db.name)


def _replica_identity_check(db: DatabaseScope) -> Check:
    """Once published, a table without one refuses UPDATE and DELETE on the source."""
    no_identity = [t for t in db.tables if t.copies_rows and not t.info.is_partitioned
                   and not t.info.unlogged and not t.info.has_usable_identity]
    if not no_identity:
        return Check("tables have a primary key or replica identity", "ok",
                     f"{len(db.tables)} table(s)", database=db.name)
    statements = "; ".join(
        f"ALTER TABLE {sql.Identifier(*t.info.qualified).as_string()} REPLICA IDENTITY FULL"
        for t in no_identity[:5])
    return Check(
        "tables have a primary key or replica identity", "error",
        f"{len(no_identity)} table(s) without one: "
        + ", ".join(format_qualified_name(t.info.qualified) for t in no_identity[:5])
        + (" ..." if len(no_identity) > 5 else ""),
        "Once published, UPDATE and DELETE on these tables fail on the source. Add a primary key, or run on "
        f"the source: {statements}; (or exclude them / make them schema-only).",
        database=db.name)


def _row_security_check(db: DatabaseScope, source: ServerFacts) -> Check | None:
    policed = [t for t in db.tables if t.copies_rows and t.info.row_security]
    if not policed or source.bypasses_rls:
        return None
    return Check(
        "row-level security", "error",
        "policies would filter what the source role reads in: "
        + ", ".join(format_qualified_name(t.info.qualified) for t in policed[:5]),
        "Copying such a table would stop with an error (pgtide turns row_security off so that no row is "
        "silently left out). Use a role with BYPASSRLS or a superuser on the source "
        "(ALTER ROLE <user> BYPASSRLS), or exclude those tables.", database=db.name)


def _unlogged_check(db: DatabaseScope) -> Check | None:
    unlogged = [t for t in db.tables if t.info.unlogged and t.copies_rows]
    if not unlogged:
        return None
    return Check("unlogged tables", "warning",
                 ", ".join(format_qualified_name(t.info.qualified) for t in unlogged[:5]),
                 "Unlogged tables are copied once but cannot be replicated: changes after the copy "
                 "are lost unless you copy them again at cutover.", database=db.name)


def _sequences_check(db: DatabaseScope) -> Check | None:
    sequences = len(db.catalog.sequences)
    if not sequences:
        return None
    return Check("sequences", "warning", f"{sequences} sequence(s)",
                 "Sequences are not replicated: pgtide sets them from the source at init and again "
                 "at cutover (with a safety margin).", database=db.name)


def _large_objects_check(db: DatabaseScope) -> Check | None:
    if not db.catalog.large_objects:
        return None
    return Check("large objects", "warning", f"{db.catalog.large_objects} large object(s)",
                 "Large objects are copied once and not replicated afterwards: avoid changing them "
                 "until cutover.", database=db.name)


def _unpublishable_check(db: DatabaseScope) -> Check | None:
    """Views, materialized views and foreign tables: in the schema, never in the publication."""
    if not db.catalog.unpublishable:
        return None
    kinds = sorted({o.kind for o in db.catalog.unpublishable})
    return Check("objects without replication", "warning",
                 f"{len(db.catalog.unpublishable)} {', '.join(kinds)}(s)",
                 "Views are recreated from their definition; materialized views need REFRESH "
                 "MATERIALIZED VIEW on the target at cutover; foreign tables point at the same "
                 "foreign server.", database=db.name)


def _ddl_check(db: DatabaseScope) -> Check:
    return Check("schema changes (DDL)", "warning", "not replicated",
                 "Avoid schema changes on the source until cutover; pgtide reports drift in status.",
                 database=db.name)


def _target_database_checks(plan: Plan, scope: Scope) -> list[Check]:
    """What init would do with each target database: the same decision init acts on."""
    from ..jobs.store import JobStore
    from ..replication import naming
    from .migrate import target_decision
    from .target import TargetAction

    store = JobStore(naming.migration_id(plan.source, plan.target))
    checks = []
    for db in scope.databases:
        decision = target_decision(plan, db, store.database(db.name) if plan.options.resume else {})
        status: Status = "error" if decision.refused else (
            "warning" if decision.action is TargetAction.DROP_AND_RECREATE else "ok")
        checks.append(Check("target database", status, decision.observed, decision.remedy, database=db.name))
    return checks


def validate(plan: Plan, *, emit: Emit = discard, build: Callable[..., Scope] = build_scope) -> Report:
    """Run every check; nothing is changed on either server."""
    report = Report()

    def add(check: Check) -> None:
        report.checks.append(check)
        emit(CheckReported(check.name, check.status, check.observed, check.remedy, check.database))

    reached: list[Check] = []
    source = _reach("source", plan.source, reached)
    target = _reach("target", plan.target.with_dbname("postgres"), reached)
    for check in reached:
        add(check)
    if source is None or target is None:
        return report
    try:
        scope = build(plan.source, plan.selection, replicate=True)
        report.scope = scope
        add(Check("selection", "ok", f"{len(scope.databases)} database(s), "
                  f"{sum(len(db.tables) for db in scope.databases)} table(s)"))
        for note in scope.notes:
            add(Check("selection", "warning", note,
                      "Remove the rule that is ignored, or the one that wins." if "is ignored" in note else ""))
    except InputError as exc:
        add(Check("selection", "error", exc.cause, exc.remedy))
        scope = None
    except ConnectError as exc:
        add(Check("selection", "error", exc.cause, exc.remedy))
        scope = None
    databases = len(scope.databases) if scope else 1
    for check in _server_checks(plan, source, target, databases):
        add(check)
    for check in _tool_checks(source):
        add(check)
    if scope is not None:
        for check in _database_checks(plan, scope, plan.target.with_dbname("postgres"), source):
            add(check)
        for check in _target_database_checks(plan, scope):
            add(check)
    _attach_fixes(plan, report, add)
    return report


def _attach_fixes(plan: Plan, report: Report, add: Callable[[Check], None]) -> None:
    """The fixes that need the catalog: replica identity (for a table without a key, or a row
    filter outside the identity, which refuses the whole selection) and extensions missing from
    an existing target database (a check of its own, only when there is something to create)."""
    from .fixes import EXTENSIONS_CHECK, IDENTITY_CHECK, extension_fixes, identity_fixes, scope_for_fixes

    identity_failed = any(c.status == "error" and (c.name == IDENTITY_CHECK or (
        c.name == "selection" and "replica identity" in c.observed)) for c in report.checks)
    scope = report.scope
    if identity_failed:
        scope = scope_for_fixes(plan, report.scope)
    if scope is None:
        return
    try:
        found = [fix for db in scope.databases for fix in identity_fixes(plan, db)] if identity_failed else []
    except PgtideError:
        found = []
    for index, check in enumerate(report.checks):
        if check.status != "error":
            continue
        # A refused selection hides the per-database checks: its check carries every fix, so
        # one --fix round also sets the identities of tables that lack a key.
        mine = tuple(f for f in found if (check.name == "selection" and report.scope is None)
                     or (f.check == check.name and check.database in (None, f.database)))
        if mine:
            report.checks[index] = replace(check, fixes=check.fixes + mine)
    if report.scope is None:
        return
    for db in report.scope.databases:
        try:
            fixes = tuple(extension_fixes(plan, db))
        except PgtideError:
            continue
        if fixes:
            add(Check(EXTENSIONS_CHECK, "warning",
                      "missing in the existing target database: "
                      + ", ".join(f.statements[0].sql.rsplit(" ", 1)[-1] for f in fixes),
                      "Create them in the target database (the server has them available): "
                      + "; ".join(f.statements[0].sql for f in fixes), database=db.name, fixes=fixes))
