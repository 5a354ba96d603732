"""A stand-in for core with fixed answers, for snapshots and the 10,000-table benchmarks.

Snapshots must not show ports, versions, host names or clocks of the machine that runs them,
and must not depend on how fast a real server answers. Every answer here is built from core's
own dataclasses, so the screens render exactly what they would render for a real server.
The Pilot tests in test_flows.py use the real CoreServices against throwaway clusters instead.

FakeServices implements the Services protocol on its own and does not inherit from
CoreServices: a use case it forgot must fail in the test (AttributeError, or check_services
when the app is built), not quietly reach a real server or the real keyring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pgtide.core.catalog.discovery import (
    ColumnInfo,
    DatabaseCatalog,
    DatabaseInfo,
    ForeignKey,
    SequenceInfo,
    ServerCatalog,
    SkippedDatabase,
    TableInfo,
)
from pgtide.core.catalog.estimate import Estimate, estimate
from pgtide.core.catalog.filtercheck import FilterCheck
from pgtide.core.catalog.scope import (
    DatabaseScope,
    ExcludedTable,
    Scope,
    TableScope,
    cutoff_literal,
    time_predicate,
)
from pgtide.core.catalog.server import ServerInfo
from pgtide.core.engine.migrate import DatabaseResult
from pgtide.core.engine.validate import Check, Report
from pgtide.core.foreign.endpoint import ForeignEndpoint, looks_foreign
from pgtide.core.foreign.plan import ForeignPlan
from pgtide.core.foreign.session import ForeignStatus
from pgtide.core.foreign.source import CaptureCheck, SourceColumn, SourceTable
from pgtide.core.foreign.verify import ForeignVerifyReport, TableVerdict
from pgtide.core.infra.endpoint import Endpoint
from pgtide.core.infra.errors import CannotStream, InputError, PgtideError
from pgtide.core.infra.events import (
    CancelToken,
    Emit,
    Log,
    PhaseFinished,
    PhaseStarted,
    TableCopied,
    TableProgress,
)
from pgtide.core.infra.secrets import PGPASS_REMEDY
from pgtide.core.model.plan import Options, Plan
from pgtide.core.model.profiles import Profile, ProfileSummary
from pgtide.core.model.selection import Selection, TimeFilter
from pgtide.core.monitor.poll import (
    DatabaseStatus,
    MigrationStatus,
    ReplicationState,
    SlotStatus,
    SubscriptionStatus,
)
from pgtide.core.verify.compare import (
    RowDifference,
    TableResult,
    TableStarted,
    TableVerified,
    VerifyReport,
)
from pgtide.screens.state import EndpointFields, WizardState

#: The moment every time filter counts back from, and every profile was saved at.
FIXED_NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SOURCE_URL = "postgresql://app@old-db/shop"
TARGET_URL = "postgresql://app@new-db/postgres"


def column(name: str, type_name: str, not_null: bool = True) -> ColumnInfo:
    return ColumnInfo(name, type_name, not_null, False)


def table(schema: str, name: str, oid: int, size: int, rows: int, key: tuple[str, ...],
          columns: Sequence[ColumnInfo]) -> TableInfo:
    return TableInfo(
        schema=schema, name=name, oid=oid, kind="r", total_bytes=size, row_estimate=rows, primary_key=key,
        replica_identity="d", identity_columns=key, partition_parent=None, unlogged=False, extension_member=False,
        columns=tuple(columns),
    )


def shop_catalog() -> DatabaseCatalog:
    """The demo's sample database, as discovery would describe it."""
    tables = (
        table("billing", "invoices", 16500, 303_104, 3_000, ("id",),
              [column("id", "integer"), column("number", "bigint"), column("customer_id", "integer"),
               column("total", "numeric(12,2)"), column("issued_on", "date")]),
        table("public", "audit_log", 16480, 188_416, 2_000, (),
              [column("at", "timestamp with time zone"), column("actor", "text", False),
               column("action", "text", False), column("detail", "jsonb", False)]),
        table("public", "customers", 16400, 253_952, 2_000, ("id",),
              [column("id", "integer"), column("name", "text"), column("email", "text", False),
               column("region", "text"), column("created_at", "timestamp with time zone")]),
        table("public", "documents", 16490, 32_768, 5, ("id",),
              [column("id", "integer"), column("title", "text"), column("content", "oid", False)]),
        table("public", "metrics", 16460, 7_651_328, 70_080, ("device_id", "recorded_at"),
              [column("device_id", "integer"), column("recorded_at", "timestamp with time zone"),
               column("temperature", "real", False), column("humidity", "real", False)]),
        table("public", "orders", 16420, 2_097_152, 20_000, ("id",),
              [column("id", "bigint"), column("customer_id", "integer"), column("status", "text"),
               column("amount", "numeric(12,2)"), column("created_at", "timestamp with time zone")]),
        table("public", "page_views", 16440, 31_326_208, 250_000, ("id",),
              [column("id", "bigint"), column("path", "text"), column("referrer", "text", False),
               column("user_agent", "text", False), column("viewed_at", "timestamp with time zone")]),
    )
    fks = (
        ForeignKey("orders_customer_id_fkey", ("public", "orders"), ("customer_id",), ("public", "customers"), ("id",)),
        ForeignKey("invoices_customer_id_fkey", ("billing", "invoices"), ("customer_id",), ("public", "customers"),
                   ("id",)),
    )
    sequences = (SequenceInfo("public", "invoice_number_seq", None),
                 SequenceInfo("public", "orders_id_seq", ("public", "orders", "id")))
    return DatabaseCatalog("shop", 150000, ("billing", "public"), tables, (), fks, sequences, 5, (("plpgsql", "1.0"),))


def wide_catalog(database: str, count: int, *, schemas: int = 20) -> DatabaseCatalog:
    """``count`` tables over ``schemas`` schemas: the picker's worst case."""
    tables = []
    for index in range(count):
        schema = f"tenant_{index % schemas:02d}"
        tables.append(table(schema, f"events_{index:05d}", 20000 + index, 8192 * (1 + index % 50), 100 + index,
                            ("id",), [column("id", "bigint"), column("at", "timestamp with time zone")]))
    return DatabaseCatalog(database, 150000, tuple(sorted({t.schema for t in tables})), tuple(tables), (), (), (), 0, ())


def server_info(user: str = "app") -> ServerInfo:
    return ServerInfo(version_num=150000, version="15.0", wal_level="logical", is_superuser=False,
                      can_replicate=True, can_create_database=True, user=user, database="shop")


def scope_for(server: ServerCatalog, catalogs: dict[str, DatabaseCatalog], selection: Selection) -> Scope:
    """build_scope without a server: the same treatment, time windows resolved at FIXED_NOW."""
    databases = []
    for db in server.databases:
        if not selection.includes_database(db.name) or db.name not in catalogs:
            continue
        catalog = catalogs[db.name]
        tables, excluded = [], []
        for info in catalog.tables:
            treatment = selection.treatment(db.name, info.schema, info.name)
            if treatment.mode == "excluded":
                excluded.append(ExcludedTable(info.schema, info.name, "; ".join(treatment.rules)))
                continue
            where, literal = treatment.row_filter, None
            rows = None
            if treatment.time_filter is not None:
                col = info.column(treatment.time_filter.column)
                assert col is not None
                literal = cutoff_literal(treatment.time_filter.window.cutoff(FIXED_NOW), col.type)
                where = time_predicate(col.name, literal)
            if where is not None:
                rows = (info.row_estimate or 0) // 4
            tables.append(TableScope(db.name, info, "schema_only" if treatment.mode == "schema_only" else "full",
                                     treatment.row_filter, treatment.time_filter, literal, where, (), rows))
        databases.append(DatabaseScope(db.name, catalog, tuple(tables), tuple(excluded)))
    return Scope(server, selection, tuple(databases), FIXED_NOW)


@dataclass
class FakeVerifyRun:
    plan: Plan
    scope: Scope
    on_event: Callable[[Any], None]
    differing: dict[tuple[str, str], int] = field(default_factory=dict)

    def run(self) -> VerifyReport:
        tables = [t for db in self.scope.databases for t in db.tables]
        results = []
        for index, scoped in enumerate(tables, 1):
            self.on_event(TableStarted(scoped.database, scoped.schema, scoped.name, index, len(tables)))
            missing = self.differing.get((scoped.schema, scoped.name), 0)
            rows = scoped.estimated_rows if scoped.where else scoped.info.row_estimate
            result = TableResult(
                scoped.database, scoped.schema, scoped.name, "differ" if missing else "match",
                "key ranges" if scoped.copies_rows else "schema only", key_columns=scoped.info.primary_key,
                source_rows=rows if scoped.copies_rows else 0, target_rows=(rows or 0) - missing,
                missing=missing, schema_only=not scoped.copies_rows, seconds=0.1,
                differences=tuple(RowDifference("missing", (str(17 + n),)) for n in range(missing)),
            )
            self.on_event(TableVerified(result))
            results.append(result)
        return VerifyReport(tuple(results), 1.5, ("shop",))

    def cancel(self) -> None:
        pass


class FakeMonitor:
    def __init__(self, databases: Sequence[str], lag: Sequence[int]) -> None:
        self.databases = list(databases)
        self.lag = list(lag) or [0]
        self.polls = 0
        self.closed = False

    def poll(self) -> MigrationStatus:
        lag = self.lag[min(self.polls, len(self.lag) - 1)]
        self.polls += 1
        statuses = []
        for name in self.databases:
            slot = SlotStatus(slot_name=f"pgtide_{name}", exists=True, current_lsn=10_000_000, active=True,
                              confirmed_flush_lsn=10_000_000 - lag, restart_lsn=10_000_000 - lag - 4096)
            sub = SubscriptionStatus(subscription_name=f"pgtide_{name}", exists=True, enabled=True, worker_pid=4242,
                                     table_counts=MappingProxyType({"ready": 6}), apply_error_count=0,
                                     sync_error_count=0)
            statuses.append(DatabaseStatus(
                database=name, source=slot, target=sub, state=ReplicationState.STREAMING,
                reason="caught up" if lag == 0 else f"{lag} B behind", lag_bytes=lag, lag_seconds=0.0,
                retained_wal_bytes=lag + 4096, retained_warning="ok", retained_reason="", eta_seconds=0.0,
                polled_at=FIXED_NOW,
            ))
        return MigrationStatus(tuple(statuses), FIXED_NOW)

    def close(self) -> None:
        self.closed = True


class FakeServices:
    """Fixed answers; ``hold_init`` keeps init in its data phase until released (for the run snapshot)."""

    def __init__(self, *, catalogs: dict[str, DatabaseCatalog] | None = None, hold_init: bool = False,
                 validation_error: bool = False, lag: Sequence[int] = (2048, 512, 0),
                 differing: dict[tuple[str, str], int] | None = None,
                 non_empty_targets: Sequence[str] = ()) -> None:
        self.catalogs = catalogs if catalogs is not None else {"shop": shop_catalog()}
        self.server = ServerCatalog(150000, tuple(DatabaseInfo(name, 11_000_000 if name == "shop" else 7_700_000,
                                                               "app", "UTF8")
                                                  for name in sorted({*self.catalogs, "postgres"})),
                                    (SkippedDatabase("template0", "template database"),
                                     SkippedDatabase("template1", "template database")))
        self.hold = threading.Event()
        if not hold_init:
            self.hold.set()
        self.validation_error = validation_error
        #: Target databases that hold tables: validate says init refuses them, or drops them with drop_existing.
        self.non_empty_targets = tuple(non_empty_targets)
        self.differing = differing or {}
        self.lag = lag
        self.profiles: dict[str, Profile] = {}
        self.saved_modified = FIXED_NOW
        self.monitors: list[FakeMonitor] = []
        self.torn_down: list[str] = []
        #: Every cancel token handed to the app, to see whether a run was asked to stop.
        self.cancel_tokens: list[CancelToken] = []
        self.passwords: dict[str, str] = {}
        #: The last verify the record would hold (None: never verified).
        self.recorded_verify: dict[str, Any] | None = None
        #: What `pgtide migrations --json` would list (none by default: the Start screen hides the list).
        self.recorded_migrations: list[dict[str, Any]] = []
        self.fixes_applied: list[Any] = []
        #: validate's replica-identity error carries its fix (the app's Fix action).
        self.fixable = False
        self.schema_applied: list[str] = []
        self.enabled: list[str] = []
        self.skipped: list[tuple[str, int]] = []
        #: Recorded foreign-source migrations by id (foreign_migration() builds one).
        self.foreign: dict[str, FakeForeignMigration] = {}
        #: What a foreign source's test finds; every source tested, with its password.
        self.foreign_capture = CaptureCheck(True, "binlog on, ROW format, FULL row images (MariaDB 11.4)")
        self.foreign_tested: list[ForeignEndpoint] = []
        #: Every row filter a foreign source was asked about: (table, filter).
        self.foreign_filters_checked: list[tuple[str, str]] = []
        #: Target tables that already exist: validate reports them (an error unless drop_existing).
        self.foreign_existing: tuple[str, ...] = ()
        #: Every plan foreign_init copied; foreign_init waits on foreign_hold before finishing.
        self.foreign_inits: list[ForeignPlan] = []
        self.foreign_hold = threading.Event()
        self.foreign_hold.set()

    # -- servers ----------------------------------------------------------------------------

    def parse_endpoint(self, text: str, **overrides: str) -> Endpoint:
        # Parsing touches no server: core's own parser keeps the form's behaviour true to life.
        return Endpoint.parse(text, **overrides)  # type: ignore[arg-type]

    def probe(self, endpoint: Endpoint) -> ServerInfo:
        if endpoint.host == "unreachable":
            raise PgtideError(f"{endpoint.redacted()}: nothing accepts connections at unreachable:5432",
                              "Check that the server is running and listening on that address and port.",
                              title="Cannot connect")
        return server_info(endpoint.user)

    def list_databases(self, endpoint: Endpoint) -> ServerCatalog:
        return self.server

    def discover_database(self, endpoint: Endpoint, database: str) -> DatabaseCatalog:
        return self.catalogs[database]

    def check_filter(self, endpoint: Endpoint, database: str, table: TableInfo, *, predicate: str | None = None,
                     time_filter: TimeFilter | None = None) -> FilterCheck:
        if predicate is not None and "region" in predicate and table.name == "orders":
            raise InputError(f'"shop".public.orders: the filter {predicate!r} is rejected by the server: '
                             'column "region" does not exist',
                             "Did you mean status? Columns of this table: id, customer_id, status, amount, created_at",
                             title="Invalid row filter")
        rows = (table.row_estimate or 0) // 4
        if time_filter is not None:
            col = table.column(time_filter.column)
            assert col is not None
            cutoff = time_filter.window.cutoff(FIXED_NOW)
            where = time_predicate(col.name, cutoff_literal(cutoff, col.type))
            return FilterCheck(where, rows, (col.name,), cutoff.isoformat(sep=" ", timespec="seconds"))
        assert predicate is not None
        return FilterCheck(predicate, rows, ("id",))

    # -- secrets and profiles ---------------------------------------------------------------------

    def keyring_status(self) -> tuple[bool, str]:
        return False, "no OS keyring is available on this machine"

    def remember_password(self, endpoint: Endpoint, password: str) -> None:
        self.passwords[endpoint.identity] = password

    def stored_password(self, endpoint: Endpoint) -> str | None:
        return self.passwords.get(endpoint.identity)

    def pgpass_remedy(self) -> str:
        return PGPASS_REMEDY

    def list_profiles(self) -> list[ProfileSummary]:
        return [ProfileSummary(p.name, p.path, p.plan.source.redacted(), p.plan.target.redacted(),
                               self.saved_modified) for p in sorted(self.profiles.values(), key=lambda p: p.name)]

    def load_profile(self, name: str) -> Profile:
        return self.profiles[name]

    def save_profile(self, name: str, plan: Plan, base: Profile | None = None) -> Profile:
        profile = Profile(name, Path(f"/profiles/{name}.toml"), replace(plan, source=plan.source.without_password(),
                                                                         target=plan.target.without_password()))
        self.profiles[name] = profile
        return profile

    def duplicate_profile(self, name: str, new_name: str) -> Profile:
        return self.save_profile(new_name, self.profiles[name].plan)

    def delete_profile(self, name: str) -> None:
        del self.profiles[name]

    # -- review ------------------------------------------------------------------------------------

    def build_plan(self, source: Endpoint, target: Endpoint, selection: Selection,
                   options: Mapping[str, object] | None = None) -> Plan:
        return Plan(source, target, selection, Options.from_dict(dict(options or {}), source="options"))

    def scope(self, plan: Plan) -> Scope:
        return scope_for(self.server, self.catalogs, plan.selection)

    def validate(self, plan: Plan, emit: Emit) -> Report:
        scope = self.scope(plan)
        checks = [
            Check("source reachable", "ok", "PostgreSQL 15"),
            Check("target reachable", "ok", "PostgreSQL 15"),
            Check("selection", "ok", f"{len(scope.databases)} database(s), "
                  f"{sum(len(db.tables) for db in scope.databases)} table(s)"),
            Check("source wal_level", "ok", "logical"),
            Check("source role can replicate", "ok", "REPLICATION"),
        ]
        no_identity = [t for db in scope.databases for t in db.tables if t.copies_rows and not t.info.has_usable_identity]
        if no_identity or self.validation_error:
            names = ", ".join(f"{t.schema}.{t.name}" for t in no_identity) or "public.audit_log"
            checks.append(Check("tables have a primary key or replica identity", "error",
                                f"1 table(s) without one: {names}",
                                "Once published, UPDATE and DELETE on these tables fail on the source. Add a primary "
                                'key, or run on the source: ALTER TABLE "public"."audit_log" REPLICA IDENTITY FULL; '
                                "(or exclude them / make them schema-only).", database="shop",
                                fixes=_identity_fixes(names) if self.fixable else ()))
        else:
            checks.append(Check("tables have a primary key or replica identity", "ok", "7 table(s)", database="shop"))
        for db in scope.databases:
            if db.name not in self.non_empty_targets:
                continue
            if plan.options.drop_existing:
                checks.append(Check("target database", "warning", "is not empty (public.orders): it will be dropped and "
                                    "created again (--drop-existing)", database=db.name))
            else:
                checks.append(Check("target database", "error", "is not empty: it has public.orders",
                                    "Tick 'Drop and recreate non-empty target databases' to replace it.",
                                    database=db.name))
        checks.append(Check("sequences", "warning", "2 sequence(s)",
                            "Sequences are not replicated: pgtide sets them from the source at init and again at "
                            "cutover (with a safety margin).", database="shop"))
        checks.append(Check("large objects", "warning", "5 large object(s)",
                            "Large objects are copied once and not replicated afterwards: avoid changing them until "
                            "cutover.", database="shop"))
        from pgtide.core.infra.events import CheckReported

        for check in checks:
            emit(CheckReported(check.name, check.status, check.observed, check.remedy, check.database))
        return Report(checks, scope)

    def estimate(self, scope: Scope) -> Estimate:
        return estimate(scope, bytes_per_second=50 * 1024 * 1024)

    # -- running -------------------------------------------------------------------------------------

    def cancel_token(self) -> CancelToken:
        token = CancelToken()
        self.cancel_tokens.append(token)
        return token

    def init(self, plan: Plan, scope: Scope | None, emit: Emit, cancel: CancelToken) -> list[DatabaseResult]:
        assert scope is not None
        at = FIXED_NOW.timestamp()
        emit(PhaseStarted(None, "globals", at=at))
        emit(Log("info", "roles: 1 created, 0 already present", at=at))
        emit(PhaseFinished(None, "globals", 0.1, at=at))
        for db in scope.databases:
            for phase in ("target", "publication", "schema"):
                emit(PhaseStarted(db.name, phase, at=at))
                emit(PhaseFinished(db.name, phase, 0.1, at=at))
            emit(Log("info", "slot created, snapshot exported", db.name, at=at))
            emit(PhaseStarted(db.name, "data", at=at))
            tables = [t for t in db.tables if t.copies_rows]
            for index, scoped in enumerate(tables):
                size = scoped.estimated_bytes
                rows = scoped.estimated_rows if scoped.where else scoped.info.row_estimate
                if index % 2 == 0:
                    emit(TableCopied(db.name, scoped.schema, scoped.name, rows or 0, size, 0.5, at=at))
                else:
                    emit(TableProgress(db.name, scoped.schema, scoped.name, size // 3, (rows or 0) // 3, size, at=at))
            while not self.hold.wait(0.05):
                cancel.check()  # the app cancels a running init when it exits
            cancel.check()
            for scoped in tables:
                rows = scoped.estimated_rows if scoped.where else scoped.info.row_estimate
                emit(TableCopied(db.name, scoped.schema, scoped.name, rows or 0, scoped.estimated_bytes, 0.5, at=at))
            emit(PhaseFinished(db.name, "data", 1.0, at=at))
            for phase in ("indexes", "sync"):
                emit(PhaseStarted(db.name, phase, at=at))
                emit(PhaseFinished(db.name, phase, 0.1, at=at))
        return [DatabaseResult(db.name, "streaming", len(db.tables), 0, 0, 1.0) for db in scope.databases]

    def teardown(self, plan: Plan, databases: Sequence[str] | None, emit: Emit) -> list[str]:
        self.torn_down.extend(databases or [])
        return [f"subscription, slot and publication of {name}" for name in databases or []]

    def migration_scope(self, plan: Plan) -> Scope:
        return self.scope(plan)

    def open_monitor(self, plan: Plan, databases: Sequence[str], *, tables: int = 0) -> FakeMonitor:
        monitor = FakeMonitor(databases, self.lag)
        self.monitors.append(monitor)
        return monitor

    def verifier(self, plan: Plan, on_event: Callable[[Any], None]) -> FakeVerifyRun:
        return FakeVerifyRun(plan, self.scope(plan), on_event, dict(self.differing))

    def cutover(self, plan: Plan, options: Mapping[str, Any], emit: Emit) -> FakeCutoverRun:
        return FakeCutoverRun(plan, dict(options), emit)

    def recorded_history(self, plan: Plan) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
        return {}, self.recorded_verify

    def detach(self) -> None:
        self.detached = True

    def list_migrations(self) -> list[dict[str, Any]]:
        return list(self.recorded_migrations)

    def apply_fixes(self, plan: Plan, fixes: Sequence[Any], emit: Emit) -> list[str]:
        self.fixes_applied += list(fixes)
        return [s.sql for f in fixes for s in f.statements]

    def schema_apply(self, plan: Plan, database: str, emit: Emit) -> list[str]:
        self.schema_applied.append(database)
        return [f"applied the drift statements of {database}"]

    def enable_apply(self, plan: Plan, database: str, emit: Emit) -> bool:
        self.enabled.append(database)
        return True

    def skip_failed_transaction(self, plan: Plan, database: str, lsn: int, emit: Emit) -> None:
        self.skipped.append((database, lsn))

    def migration_plan(self, migration_id: str) -> Plan:
        return demo_plan()

    def log_file(self) -> Path:
        return Path("/var/log/pgtide/pgtide.log")

    # -- foreign sources ----------------------------------------------------------------------------

    def add_foreign(self, migration: FakeForeignMigration) -> FakeForeignMigration:
        """Record ``migration``: the Start screen lists it as `pgtide migrations` would."""
        self.foreign[migration.migration_id] = migration
        status = migration.status
        self.recorded_migrations.append({
            "id": migration.migration_id, "source": migration.plan.source.redacted(),
            "target": migration.plan.target.redacted(), "databases": {migration.plan.database: status.state},
            "worker": {"state": status.worker.get("state"), "pid": status.worker.get("pid"),
                       "command": "foreign-sync"}, "recorded_by": "pgtide", "kind": "foreign"})
        return migration

    def looks_foreign(self, text: str) -> bool:
        return looks_foreign(text)  # parsing touches no server (an SQLite path: the file's first bytes)

    def parse_foreign(self, text: str) -> ForeignEndpoint:
        return ForeignEndpoint.parse(text)

    def foreign_source_tables(self, source: ForeignEndpoint) -> tuple[list[SourceTable], CaptureCheck]:
        self.foreign_tested.append(source)
        if source.host == "unreachable":
            raise PgtideError(f"{source.redacted()}: nothing accepts connections at unreachable:3306",
                              "Check that the server is running and listening on that address and port.",
                              title="Cannot connect")
        return foreign_source_tables(), self.foreign_capture

    def foreign_check_filter(self, source: ForeignEndpoint, table: SourceTable, where: str) -> str:
        """MariaDB's answer: a filter naming a column the table lacks is refused in its words."""
        import re

        self.foreign_filters_checked.append((table.name, where))
        names = set(table.column_names)
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'[^']*'", "", where)):
            if word.lower() not in {"and", "or", "not", "null", "is", "in", "like", "between"} and word not in names:
                raise InputError(f"{table.name}: MariaDB refuses the row filter: (1054, \"Unknown column '{word}' "
                                 "in 'WHERE'\")", "Write a MariaDB expression over the table's columns, e.g. "
                                 "created_at >= '2024-01-01'.", title="Invalid row filter")
        return where

    def build_foreign_plan(self, source: ForeignEndpoint, target: Endpoint,
                           options: Mapping[str, Any]) -> ForeignPlan:
        fields = dict(options)
        database = str(fields.pop("target_database", "") or target.dbname)
        return ForeignPlan(source, target.with_dbname(database), **fields)

    def foreign_validate(self, plan: ForeignPlan, emit: Emit) -> Report:
        from pgtide.core.infra.events import CheckReported

        tables = [t for t in foreign_source_tables() if plan.picks(t)]
        checks = [Check("source", "ok", f"{plan.source.redacted()} ({plan.source.kind})"),
                  Check("selection", "ok", f"{len(tables)} table(s), about {sum(t.rows for t in tables):,} rows")]
        checks += [Check(f"filter {name}", "ok", f"the source accepts the row filter on {name}")
                   for name in plan.filters]
        checks.append(Check("layout", "ok", f"{plan.layout} layout for {len(tables)} table(s)"))
        keyless = [t.name for t in tables if not t.key]
        if keyless and plan.layout == "typed":
            checks.append(Check("keys", "warning", f"no primary or unique key on the target: {', '.join(keyless)}",
                                "These tables are copied; a change stream cannot apply changes to them by key."))
        checks.append(Check("consistency", "ok", "one consistent snapshot (START TRANSACTION WITH CONSISTENT "
                            "SNAPSHOT), binlog position read under it"))
        checks.append(Check("change capture", "ok" if self.foreign_capture.ok else "warning",
                            self.foreign_capture.observed, self.foreign_capture.remedy))
        checks.append(Check("target", "ok", f"{plan.target.redacted()} (PostgreSQL 16.4)"))
        clash = [name for name in self.foreign_existing if any(t.name == name for t in tables)]
        if clash and not plan.drop_existing:
            checks.append(Check("target tables", "error", f"{len(clash)} table(s) already exist on the target and "
                                f"are not from this migration: {', '.join(clash)}",
                                "Drop them, pick another --target-schema, or pass --drop-existing to replace them."))
        else:
            checks.append(Check("target database", "ok", f"{plan.target.dbname!r} is ready"))
        for check in checks:
            emit(CheckReported(check.name, check.status, check.observed, check.remedy))
        return Report(checks, None)

    def foreign_init(self, plan: ForeignPlan, emit: Emit, cancel: CancelToken) -> list[str]:
        self.foreign_inits.append(plan)
        at = FIXED_NOW.timestamp()
        database = plan.database
        tables = [t for t in foreign_source_tables() if plan.picks(t) and t.name not in plan.schema_only]
        emit(Log("info", f"created the target database {database!r}", database, at=at))
        emit(PhaseStarted(database, "copy", at=at))
        for index, table in enumerate(tables):
            if index % 2 == 0:
                emit(TableCopied(database, plan.target_schema, table.name, table.rows, table.size_bytes, 0.4, at=at))
            else:
                emit(TableProgress(database, plan.target_schema, table.name, table.size_bytes // 2,
                                   table.rows // 2, table.size_bytes, at=at))
        while not self.foreign_hold.wait(0.05):
            cancel.check()
        cancel.check()
        for table in tables:
            emit(TableCopied(database, plan.target_schema, table.name, table.rows, table.size_bytes, 0.4, at=at))
        emit(PhaseFinished(database, "copy", 1.0, at=at))
        emit(PhaseStarted(database, "indexes", at=at))
        emit(PhaseFinished(database, "indexes", 0.1, at=at))
        emit(Log("info", f"copied {len(tables)} table(s), {sum(t.rows for t in tables):,} rows", database, at=at))
        return [t.name for t in tables]

    def foreign_plan(self, migration_id: str) -> ForeignPlan:
        return self.foreign[migration_id].plan

    def foreign_status(self, migration_id: str) -> ForeignStatus:
        migration = self.foreign[migration_id]
        migration.polls += 1
        return replace(migration.status, worker=dict(migration.status.worker))

    def foreign_lag_history(self, migration_id: str) -> list[float]:
        return list(self.foreign[migration_id].lag_history)

    def foreign_verify(self, migration_id: str, on_table: Callable[[TableVerdict], None],
                       cancel: CancelToken) -> ForeignVerifyReport:
        migration = self.foreign[migration_id]
        for verdict in migration.verdicts:
            cancel.check()
            on_table(verdict)
        migration.verified += 1
        return ForeignVerifyReport(list(migration.verdicts), 1.2)

    def foreign_start_sync(self, migration_id: str, *, refresh_every: str | None = None) -> str:
        migration = self.foreign[migration_id]
        if refresh_every:
            migration.plan = replace(migration.plan, refresh_every=float(refresh_every.rstrip("s")))
        if not migration.can_stream and not migration.plan.refresh_every:
            raise CannotStream("changes cannot stream from this source: binlog_format is STATEMENT",
                             "SET GLOBAL binlog_format = ROW (and binlog_format=ROW in my.cnf). Or re-read the "
                             f"tables every interval: `pgtide sync --migration {migration_id} --refresh-every 30s`.")
        mode = "refresh" if migration.plan.refresh_every or not migration.can_stream else "stream"
        migration.started.append(mode)
        migration.status = replace(migration.status, state="streaming", mode=mode,
                                   worker={"state": "alive", "pid": 5151})
        return mode

    def foreign_stop(self, migration_id: str) -> str:
        migration = self.foreign[migration_id]
        migration.stopped += 1
        migration.status = replace(migration.status, lag_seconds=None, applied_at=None,
                                   worker={"state": "finished (0)", "pid": migration.status.worker.get("pid")})
        return "watching"


@dataclass
class FakeForeignMigration:
    """A recorded foreign migration: its plan, the status it answers, its verify verdicts."""

    plan: ForeignPlan
    status: ForeignStatus
    verdicts: list[TableVerdict]
    can_stream: bool = True
    lag_history: list[float] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    stopped: int = 0
    verified: int = 0
    polls: int = 0

    @property
    def migration_id(self) -> str:
        return self.status.migration_id


FOREIGN_ID = "f3c9a1d2e7b04"


def foreign_source_tables() -> list[SourceTable]:
    """A MariaDB shop's catalog: two keyed tables and a log without a key."""
    def col(name: str, source_type: str) -> SourceColumn:
        return SourceColumn(name, source_type, base=source_type.split("(")[0])

    return [
        SourceTable("audit_log", (col("at", "datetime"), col("detail", "text")), rows=2_000, size_bytes=180_224),
        SourceTable("customers", (col("id", "int(11)"), col("email", "varchar(200)")), key=("id",), id_column="id",
                    rows=1_200, size_bytes=98_304, rows_exact=False),
        SourceTable("orders", (col("id", "bigint(20)"), col("amount", "decimal(12,2)")), key=("id",),
                    id_column="id", rows=20_000, size_bytes=2_097_152),
    ]


def foreign_migration(*, mode: str = "stream", worker: str = "alive", differing: bool = False,
                      can_stream: bool = True, refresh_every: float | None = None,
                      last_refresh_at: float | None = None) -> FakeForeignMigration:
    """A MariaDB shop copied into PostgreSQL: three tables (one without a key), kept in sync
    by the binlog (``mode="stream"``), a refresh, or not at all (``mode="copy"``)."""
    source = ForeignEndpoint.parse("mariadb://app@old-db:3306/shop")
    target = Endpoint.parse("postgresql://app@new-db/shop")
    plan = ForeignPlan(source, target, layout="typed", refresh_every=refresh_every)
    tables = {"audit_log": {"state": "copied", "rows": 2_000, "position": "mysql-bin.000003:4"},
              "customers": {"state": "copied", "rows": 1_200, "position": "mysql-bin.000003:4"},
              "orders": {"state": "copied", "rows": 20_000, "position": "mysql-bin.000003:4"}}
    last_refresh = None
    if mode == "refresh":
        last_refresh = {"mode": "refresh", "inserted": 3, "updated": 1, "deleted": 0, "reloaded": 0,
                        "seconds": 0.31, "at": last_refresh_at or 0.0}
    alive = worker == "alive"
    status = ForeignStatus(
        FOREIGN_ID, "copied" if mode == "copy" else "streaming", mode, tables,
        "mysql-bin.000003:91822" if mode == "stream" else None,
        0.4 if alive and mode == "stream" else None, None,
        {"state": worker, "pid": 4242 if worker != "none" else None}, last_refresh)
    verdicts = [
        TableVerdict("audit_log", 2_000, 2_000, seconds=0.1),
        TableVerdict("customers", 1_200, 1_200, seconds=0.1),
        TableVerdict("orders", 20_000, 19_998, missing=["17", "18"], different=["4"], missing_count=2,
                     different_count=1, seconds=0.2) if differing else TableVerdict("orders", 20_000, 20_000),
    ]
    return FakeForeignMigration(plan, status, verdicts, can_stream=can_stream,
                                lag_history=[0.0, 1.5, 3.0, 0.8, 0.4] if mode == "stream" else [])


@dataclass
class FakeCutoverRun:
    """A cutover with fixed answers: a preflight with one warning (an error when fenced "none"
    with sessions connected is not modelled), steps with fixed durations."""

    plan: Plan
    options: dict[str, Any]
    emit: Emit
    cancelled: bool = False

    def preflight(self) -> Any:
        from pgtide.core.engine.cutover import Preflight, PreflightCheck

        checks = [
            PreflightCheck("streaming", "ok", "every table streaming", database="shop"),
            PreflightCheck("lag", "ok", "2.1 kB behind", database="shop"),
            PreflightCheck("schema", "ok", "6 published table(s) alike", database="shop"),
            PreflightCheck("last verify", "ok", "clean, 4 min ago"),
            PreflightCheck("fence", "ok", "roles to set read-only: shop_app@shop; sessions to end: 3"),
            PreflightCheck("login roles", "error", "the application's roles: no password on the target: shop_app",
                           "Pass --copy-role-passwords (copies SCRAM verifiers, never plaintext), or on the target "
                           "run ALTER ROLE <name> PASSWORD '...'."),
            PreflightCheck("estimate", "ok", "about 1 s of write downtime (2.1 kB to drain, plus the final verify)"),
        ]
        if self.options.get("copy_role_passwords"):
            checks[5] = PreflightCheck("login roles", "ok", "the SCRAM verifiers of shop_app will be copied")
        return Preflight(("shop",), checks, roles=[("shop_app", "shop")], passwordless=["shop_app"],
                         estimate_seconds=1.0)

    def run(self, preflight: Any) -> Any:
        from pgtide.core.engine.cutover import CutoverResult, CutoverStep

        steps = [("materialized views", 0.02), ("fence", 0.06), ("quiet", 0.01), ("drain", 0.05),
                 ("sequences", 0.02), ("final verify", 0.4), ("switch", 0.08)]
        for name, seconds in steps:
            self.emit(CutoverStep(name, "started", at=0.0))
            self.emit(CutoverStep(name, "done", seconds=seconds, at=0.0))
        return CutoverResult(("shop",), 0.64, steps, 3, [], 6, False, True,
                             ["Point the application at the target now."])

    def cancel(self) -> None:
        self.cancelled = True


def demo_plan() -> Plan:
    selection = Selection.from_cli(include_databases="shop", time_filters="shop.public.metrics:recorded_at:90 days",
                                   schema_only_tables="shop.public.audit_log")
    return Plan(Endpoint.parse(SOURCE_URL), Endpoint.parse(TARGET_URL), selection)


def wizard_state(*, password: str = "") -> WizardState:
    state = WizardState()
    state.source_fields = EndpointFields(host="old-db", port="5432", dbname="shop", user="app")
    state.target_fields = EndpointFields(host="new-db", port="5432", dbname="postgres", user="app",
                                         password=password, sslmode="require")
    state.source = Endpoint.parse(SOURCE_URL)
    state.target = Endpoint.parse(TARGET_URL)
    return state


def _identity_fixes(names: str) -> tuple[Any, ...]:
    from pgtide.core.engine.fixes import Fix
    from pgtide.core.monitor.drift import Statement

    return (Fix("tables have a primary key or replica identity", "shop",
                (Statement("source", "shop", 'ALTER TABLE "public"."audit_log" REPLICA IDENTITY FULL'),),
                f"{names} has no key: FULL logs the whole old row of each UPDATE and DELETE"),)
