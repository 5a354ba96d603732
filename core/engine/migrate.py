"""init, sync and teardown: the zero-gap protocol (docs/architecture.md §1), per source database.

init, per selected database:
 1. the publication on the source (pgoutput looks it up at decode time, so it must exist
    before the slot),
 2. the slot, created with an exported snapshot on a replication connection that stays
    open (the snapshot is the slot's consistent point),
 3. the schema dumped under that snapshot; pre-data restored on the target,
 4. the rows copied under that snapshot by parallel psql pipes (largest first, big tables
    in key ranges, filters applied), sequences and large objects with them,
 5. post-data (indexes, constraints, triggers) built in parallel after the data,
 6. the subscription created on the slot with copy_data = false: apply starts exactly at
    the snapshot — nothing missed, nothing twice.

Any failure drops what this run created on the servers (subscription, slot, publication)
and says so; the job store remembers what finished, so a rerun continues.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..catalog.predicate import deparsed, execute_parsed, pin_quoting
from ..catalog.scope import CHECK_PUBLICATION_PREFIX, DatabaseScope, Scope, TableScope, build_scope
from ..copy.roles import copy_roles
from ..copy.snapshot import Snapshot, copy_tables, exported_snapshot
from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError, MigrationFailed, PgtideError
from ..infra.events import Cancelled, CancelToken, Emit, Log, PhaseFinished, PhaseStarted, discard
from ..infra.tools import run_tool
from ..jobs.state import DatabaseState
from ..jobs.store import JobStore, jobs_dir, record_throughput
from ..model.plan import Plan
from ..model.selection import format_qualified_name
from ..replication import naming
from .index_progress import watch_post_data
from .target import TargetAction, TargetDecision, decide_target, target_facts

STATUS_STREAMING = DatabaseState.STREAMING.value


@dataclass(frozen=True)
class DatabaseResult:
    database: str
    status: str
    tables: int
    rows: int
    bytes: int
    seconds: float


@contextmanager
def _phase(emit: Emit, database: str | None, phase: str) -> Iterator[None]:
    emit(PhaseStarted(database, phase))
    started = time.monotonic()
    yield
    emit(PhaseFinished(database, phase, time.monotonic() - started))


def _server_version(endpoint: Endpoint) -> int:
    with connect(endpoint) as conn:
        return int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0])  # type: ignore[index]


# -- teardown -----------------------------------------------------------------------------------


def drop_subscription(target: Endpoint, name: str) -> bool:
    """Disable, detach from its slot, drop. Detaching first means the drop never needs the source."""
    # A database that exists but refuses us (no CONNECT, connection limit, datallowconn off)
    # raises here: teardown must report that subscription as not removed, not as absent.
    with connect(target) as conn:
        if not conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = "
                            "(SELECT oid FROM pg_database WHERE datname = current_database())", [name]).fetchone():
            return False
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
        conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
        return True


def drop_slot(source: Endpoint, slot: str, *, timeout: float = 30.0) -> bool:
    """Drop the slot, ending a walsender that still holds it (a slot left behind fills the disk)."""
    with connect(source) as conn:
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                return True
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            except psycopg.errors.UndefinedObject:
                return False


def drop_publication(source: Endpoint, name: str) -> bool:
    with connect(source) as conn:
        if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
        return True


def drop_check_publications(source: Endpoint) -> bool:
    """Drop publications named like a filter check's (they only ever exist inside a rolled-back
    transaction; pgtide 0.1 could be tricked into committing one)."""
    with connect(source) as conn:
        # Exactly the checks' names, and only our own: a user's publication is never touched.
        names = [row[0] for row in conn.execute(
            "SELECT pubname FROM pg_publication WHERE pubname ~ %s AND pubowner = "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user)",
            [f"^{CHECK_PUBLICATION_PREFIX}[0-9a-f]{{8}}$"])]
        for name in names:
            conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
    return bool(names)


def teardown_database(plan: Plan, database: str, emit: Emit = discard) -> list[str]:
    """Remove pgtide's subscription, slot and publication for one database; idempotent.

    Each step runs on its own: an unreachable target must not keep the slot on the source
    (a slot left behind retains WAL until the source's disk fills). Steps that could not run
    are reported and raised together at the end.
    """
    names = naming.replication_names(plan.source, plan.target, database)
    removed: list[str] = []
    failed: list[str] = []

    def step(what: str, action: Callable[[], bool]) -> None:
        try:
            if action():
                removed.append(what)
                emit(Log("info", f"dropped {what}", database))
        except (PgtideError, psycopg.Error) as exc:
            reason = exc.cause if isinstance(exc, PgtideError) else (exc.diag.message_primary or str(exc))
            failed.append(f"{what}: {plan.source.redact(plan.target.redact(reason))}")

    step(f"subscription {names.subscription} on the target",
         lambda: database_exists(plan.target, database)
         and drop_subscription(plan.target.with_dbname(database), names.subscription))

    def source_endpoint() -> Endpoint:
        return plan.source.with_dbname(database if database_exists(plan.source, database) else "postgres")

    slot_step = f"replication slot {names.slot} on the source"
    step(slot_step, lambda: drop_slot(source_endpoint(), names.slot))
    step(f"publication {names.publication} on the source",
         lambda: database_exists(plan.source, database) and drop_publication(source_endpoint(), names.publication))
    step(f"filter-check publications {CHECK_PUBLICATION_PREFIX}* on the source",
         lambda: database_exists(plan.source, database) and drop_check_publications(source_endpoint()))
    if failed:
        slot_kept = any(f.startswith(slot_step) for f in failed)
        raise MigrationFailed(
            f"{database}: could not remove " + "; ".join(failed),
            "Run `pgtide teardown` again once both servers (and that database) accept the connection"
            + ("; until then the slot keeps WAL on the source." if slot_kept else
               "; the slot is gone, so the subscription left on the target only fails to connect."),
            title="Teardown incomplete",
        )
    return removed


def teardown(plan: Plan, databases: list[str] | None = None, emit: Emit = discard) -> list[str]:
    """Teardown for the given databases, or every database the job store knows."""
    store = JobStore(naming.migration_id(plan.source, plan.target))
    names = databases if databases is not None else sorted(store.databases())
    removed: list[str] = []
    for database in names:
        removed += teardown_database(plan, database, emit)
        # The target now holds a finished copy that belongs to the user: never recreate it.
        store.transition(database, DatabaseState.TORN_DOWN, created_database=False)
    return removed


# -- the target database ---------------------------------------------------------------------------


def database_exists(endpoint: Endpoint, name: str) -> bool:
    with connect(endpoint.with_dbname("postgres")) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _create_database(plan: Plan, database: str) -> None:
    with connect(plan.source.with_dbname(database)) as conn:
        encoding, collate, ctype = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
            "WHERE datname = current_database()"
        ).fetchone()  # type: ignore[misc]
    with connect(plan.target.with_dbname("postgres")) as conn:
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
            sql.Identifier(database), sql.Literal(encoding)
        )
        try:
            conn.execute(sql.SQL("{} LC_COLLATE {} LC_CTYPE {}").format(
                statement, sql.Literal(collate), sql.Literal(ctype)))
        except psycopg.errors.InvalidParameterValue:
            # The target lacks the source's locale: keep the encoding, use the target's default.
            conn.execute(statement)


def truncate_tables(target: Endpoint, db: DatabaseScope) -> None:
    """Empty every migrated table on the target in one statement (FK-linked ones together)."""
    tables = [t for t in db.tables if not t.info.is_partitioned]
    if not tables:
        return
    with connect(target) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(*t.info.qualified) for t in tables)))


def _drop_database(plan: Plan, database: str) -> None:
    with connect(plan.target.with_dbname("postgres")) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


# -- schema -------------------------------------------------------------------------------------


def _pattern(schema: str, table: str) -> str:
    """A pg_dump pattern that matches exactly this table (quoted: no wildcards, dots kept)."""
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


def dump_schema(plan: Plan, db: DatabaseScope, snapshot_name: str, path: Path, server_major: int) -> None:
    args = ["--format=custom", "--schema-only", f"--snapshot={snapshot_name}", f"--file={path}",
            "--no-publications", "--no-subscriptions", "--no-tablespaces"]
    if not plan.options.copy_roles:
        args.append("--no-owner")
    args += [f"--exclude-table={_pattern(e.schema, e.name)}" for e in db.excluded]
    run_tool("pg_dump", args, plan.source.with_dbname(db.name), server_major=server_major)


def restore_section(plan: Plan, database: str, path: Path, section: str, *, jobs: int = 1) -> None:
    args = [f"--section={section}", "--exit-on-error", "--no-tablespaces"]
    if not plan.options.copy_roles:
        args += ["--no-owner", "--no-acl"]
    if jobs > 1:
        args.append(f"--jobs={jobs}")
    run_tool("pg_restore", [*args, str(path)], plan.target.with_dbname(database))


def copy_large_objects(plan: Plan, database: str, snapshot_name: str, workdir: Path, server_major: int) -> None:
    """Large objects under the snapshot (pg_dump keeps their owners, ACLs and comments)."""
    path = workdir / "large_objects.dump"
    run_tool("pg_dump", ["--format=custom", "--data-only", "--blobs", f"--snapshot={snapshot_name}",
                         f"--file={path}", "--exclude-schema=*"],
             plan.source.with_dbname(database), server_major=server_major)
    flags = [] if plan.options.copy_roles else ["--no-owner", "--no-acl"]
    run_tool("pg_restore", ["--exit-on-error", "--data-only", *flags, str(path)], plan.target.with_dbname(database))


SEQUENCE_VALUES_SQL = """
SELECT n.nspname, c.relname, has_sequence_privilege(c.oid, 'SELECT'),
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT') THEN pg_sequence_last_value(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S'
"""


def copy_sequences(plan: Plan, db: DatabaseScope, *, margin: int = 0) -> int:
    """Set every selected sequence on the target to the source's value (+ margin)."""
    wanted = list(db.catalog.sequences)
    if not wanted:
        return 0
    included_tables = {t.info.qualified for t in db.tables}
    wanted = [s for s in wanted if s.owned_by is None or (s.owned_by[0], s.owned_by[1]) in included_tables]
    with connect(plan.source.with_dbname(db.name)) as source, connect(plan.target.with_dbname(db.name)) as target:
        rows = source.execute(SEQUENCE_VALUES_SQL).fetchall()
        current = {(schema, name): (readable, value) for schema, name, readable, value in rows}
        unreadable = []
        count = 0
        for seq in wanted:
            readable, value = current.get((seq.schema, seq.name), (True, None))
            if not readable:
                unreadable.append(format_qualified_name((seq.schema, seq.name)))
                continue
            if value is None:
                continue  # never used: the target's fresh sequence starts at the same place
            target.execute("SELECT setval(%s::regclass, %s, true)",
                           [sql.Identifier(seq.schema, seq.name).as_string(), int(value) + margin])
            count += 1
    if unreadable:
        raise MigrationFailed(
            f"{db.name}: cannot read the value of sequence(s) " + ", ".join(unreadable),
            "Grant the migration role SELECT on them (GRANT SELECT ON SEQUENCE ... TO <user>) so the target's "
            "sequences can be set; otherwise they would hand out keys that already exist.",
        )
    return count


# -- publication and subscription ------------------------------------------------------------------


def replicated_tables(db: DatabaseScope) -> list[TableScope]:
    """Tables whose changes flow through the publication: rows copied, loggable, not a parent."""
    return [t for t in db.tables if t.copies_rows and not t.info.unlogged and not t.info.is_partitioned]


def publication_statement(name: str, tables: list[TableScope], *, alter: bool = False) -> sql.Composed:
    items = []
    for table in tables:
        item = sql.SQL("TABLE {}").format(sql.Identifier(*table.info.qualified))
        if table.where:
            item = sql.SQL("{} WHERE ({})").format(item, deparsed(table.where))
        items.append(item)
    verb = "ALTER PUBLICATION {} SET {}" if alter else "CREATE PUBLICATION {} FOR {}"
    return sql.SQL(verb).format(sql.Identifier(name), sql.SQL(", ").join(items))


def ensure_publication(source: Endpoint, name: str, tables: list[TableScope]) -> str:
    """Create the publication, or bring an existing one to exactly this table list and filters."""
    if not tables:
        raise InputError("no table with rows to replicate in this database",
                         "Select at least one table that is not schema-only or unlogged.")
    with connect(source) as conn:
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone()
        pin_quoting(conn, search_path=True)
        execute_parsed(conn, publication_statement(name, tables, alter=bool(exists)))
    return "updated" if exists else "created"


def subscription_conninfo(plan: Plan, database: str) -> str:
    # The subscription stores this string in pg_subscription (readable by superusers on the
    # target). Without a password in it, the target server's own .pgpass is used.
    return plan.source.with_dbname(database).conninfo(
        include_password=plan.options.subscription_password, application_name="pgtide_subscription")


def create_subscription(plan: Plan, database: str, names: naming.ReplicationNames, *, copy_data: bool,
                        create_slot: bool, emit: Emit = discard) -> None:
    if plan.source.password and plan.options.subscription_password:
        emit(Log("warning", "the subscription keeps the source password in pg_subscription on the target; "
                            "use --no-subscription-password with a .pgpass entry on the target server to avoid it",
                 database))
    with connect(plan.target.with_dbname(database)) as conn:
        # PG15+: a change the target cannot apply (drift, a conflicting row) disables the
        # subscription, with the error in the log and the counters, instead of a worker
        # that fails and restarts every few seconds; status says how to go on.
        extra = sql.SQL(", disable_on_error = true") if conn.info.server_version >= 150000 else sql.SQL("")
        statement = sql.SQL(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
            "WITH (create_slot = {}, slot_name = {}, copy_data = {}, enabled = true{})"
        ).format(
            sql.Identifier(names.subscription), sql.Literal(subscription_conninfo(plan, database)),
            sql.Identifier(names.publication), sql.SQL("true" if create_slot else "false"),
            sql.Literal(names.slot), sql.SQL("true" if copy_data else "false"), extra,
        )
        conn.execute(statement)


# -- init -------------------------------------------------------------------------------------------


def workdir_for(plan: Plan, database: str) -> Path:
    path = jobs_dir() / naming.migration_id(plan.source, plan.target) / naming.replication_names(
        plan.source, plan.target, database).slot
    path.mkdir(parents=True, exist_ok=True)
    return path


def init(
    plan: Plan,
    *,
    scope: Scope | None = None,
    emit: Emit = discard,
    cancel: CancelToken | None = None,
) -> list[DatabaseResult]:
    """Run the zero-gap protocol for every selected database (validate first)."""
    cancel = cancel or CancelToken()
    if scope is None:
        with _phase(emit, None, "scope"):
            scope = build_scope(plan.source, plan.selection, replicate=True)
    for note in scope.notes:
        emit(Log("warning", note))
    store = JobStore(naming.migration_id(plan.source, plan.target))
    store.record_plan(plan, scope)
    if plan.options.copy_roles:
        with _phase(emit, None, "globals"):
            copy_roles(plan.source, plan.target.with_dbname("postgres"), emit)
    results = []
    for db in scope.databases:
        cancel.check()
        if plan.options.copy_mode == "server":
            results.append(_sync_database(plan, db, store, emit, initial_copy=True))
        else:
            results.append(_init_database(plan, db, store, emit, cancel))
    return results


def target_decision(plan: Plan, db: DatabaseScope, state: dict[str, Any]) -> TargetDecision:
    """The target policy (engine/target.py) for one database of this plan, from fresh facts."""
    return decide_target(
        state, target_facts(plan.target, db.name),
        ours=naming.replication_names(plan.source, plan.target, db.name).subscription,
        resume=plan.options.resume, drop_existing=plan.options.drop_existing,
        replicates=bool(replicated_tables(db)), in_place=plan.options.copy_mode == "snapshot",
    )


def prepare_target(plan: Plan, database: str, decision: TargetDecision, emit: Emit) -> bool:
    """Carry out a decision that copies into the target; returns True when pgtide created the database."""
    if decision.refused:
        raise decision.error(database)
    if decision.action in (TargetAction.USE_EMPTY, TargetAction.CONTINUE_IN_PLACE):
        return False
    if decision.drops:
        emit(Log("warning" if decision.action is TargetAction.DROP_AND_RECREATE else "info",
                 f"target database {database!r} {decision.observed}", database))
        _drop_database(plan, database)
    _create_database(plan, database)
    return True


def _subscription_exists(plan: Plan, database: str, name: str) -> bool:
    if not database_exists(plan.target, database):
        return False
    with connect(plan.target.with_dbname(database)) as conn:
        return conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", [name]).fetchone() is not None


def _init_database(plan: Plan, db: DatabaseScope, store: JobStore, emit: Emit, cancel: CancelToken) -> DatabaseResult:
    database = db.name
    names = naming.replication_names(plan.source, plan.target, database)
    state = store.database(database) if plan.options.resume else {}
    # Decided before anything is touched: a wrong flag must not stop a running migration.
    decision = target_decision(plan, db, state)
    if decision.action is TargetAction.ALREADY_DONE:
        emit(Log("info", f"target database {decision.observed} (teardown, then --no-resume, starts over)", database))
        done = store.state(database) or DatabaseState.STREAMING
        return DatabaseResult(database, done.value, len(db.tables), 0, 0, 0.0)
    if decision.refused:
        raise decision.error(database)
    in_place = decision.action is TargetAction.CONTINUE_IN_PLACE
    # Leftovers of an interrupted or failed run belong to another snapshot: remove them.
    teardown_database(plan, database, emit)
    if not plan.options.resume:
        store.reset(database)
        state = {}

    if not replicated_tables(db):
        emit(Log("info", "no table with rows to replicate: copying the schema only", database))
        return _sync_database(plan, db, store, emit, initial_copy=False, replicate=False)
    source_db = plan.source.with_dbname(database)
    target_db = plan.target.with_dbname(database)
    server_version = _server_version(source_db)
    started = time.monotonic()
    created_here: list[str] = []
    with _phase(emit, database, "target"):
        if in_place:
            truncate_tables(target_db, db)
            emit(Log("info", "continuing an interrupted run: target tables emptied, copying again under a new "
                             "snapshot", database))
            created = False
        else:
            created = prepare_target(plan, database, decision, emit)
    store.transition(database, DatabaseState.COPYING,
                     created_database=created or bool(state.get("created_database")),
                     slot=names.slot, started_at=time.time(), tables={}, schema="done" if in_place else None,
                     post_data=None)
    workdir = workdir_for(plan, database)
    try:
        with _phase(emit, database, "publication"):
            ensure_publication(source_db, names.publication, replicated_tables(db))
            created_here.append("publication")
        copied_bytes, copy_seconds, schema_file = _copy_under_snapshot(
            plan, db, names.slot, store, emit, cancel, in_place=in_place, server_version=server_version,
            workdir=workdir, on_slot=lambda: created_here.append("slot"))
        # The snapshot is released here; the slot keeps every change since it for the subscription.
        record_throughput(copied_bytes, copy_seconds)
        cancel.check()
        with _phase(emit, database, "indexes"):
            store.update(database, post_data="started")
            with watch_post_data(target_db, database, schema_file, emit):
                restore_section(plan, database, schema_file, "post-data", jobs=plan.options.jobs)
            copy_sequences(plan, db)
            store.update(database, post_data="done")
        with _phase(emit, database, "sync"):
            create_subscription(plan, database, names, copy_data=False, create_slot=False, emit=emit)
            created_here.append("subscription")
        # From here on the target holds the user's data: a later init must never recreate it.
        store.transition(database, DatabaseState.STREAMING, finished_at=time.time(), created_database=False)
    except BaseException as exc:
        _undo(plan, database, created_here, emit, interrupted=isinstance(exc, (Cancelled, KeyboardInterrupt)))
        store.transition(database, DatabaseState.FAILED,
                         error=str(exc) if isinstance(exc, PgtideError) else type(exc).__name__)
        if isinstance(exc, psycopg.Error):
            raise server_failure(plan, database, exc) from None
        raise
    rows = sum(entry.get("rows", 0) for entry in store.database(database).get("tables", {}).values())
    return DatabaseResult(database, STATUS_STREAMING, len(db.tables), rows, copied_bytes, time.monotonic() - started)


def _copy_under_snapshot(plan: Plan, db: DatabaseScope, slot: str, store: JobStore, emit: Emit,
                         cancel: CancelToken, *, in_place: bool, server_version: int, workdir: Path,
                         on_slot: Callable[[], None]) -> tuple[int, float, Path]:
    """The slot with its exported snapshot, then schema and rows under exactly that snapshot.

    Returns (bytes copied, seconds the copy took, the schema dump for the post-data step).
    The snapshot is released on return; the slot keeps every change since it.
    """
    database = db.name
    source_db = plan.source.with_dbname(database)
    with exported_snapshot(source_db, slot, server_version) as snapshot:
        on_slot()
        emit(Log("info", f"slot {slot} at {snapshot.consistent_point}, snapshot {snapshot.name}", database))
        with _phase(emit, database, "schema"):
            schema_file = workdir / "schema.dump"
            dump_schema(plan, db, snapshot.name, schema_file, server_version // 10000)
            if not in_place:
                restore_section(plan, database, schema_file, "pre-data")
                store.update(database, schema="done")
        cancel.check()
        with _phase(emit, database, "data"):
            copied_bytes, copy_seconds = copy_tables(
                source_db, plan.target.with_dbname(database), database, snapshot, db.tables,
                jobs=plan.options.jobs, emit=emit, cancel=cancel,
                on_table_done=lambda table, rows: store.table_done(
                    database, format_qualified_name(table.info.qualified), rows, table.estimated_bytes),
            )
            if db.catalog.large_objects:
                copy_large_objects(plan, database, snapshot.name, workdir, server_version // 10000)
                emit(Log("warning", f"{db.catalog.large_objects} large objects copied; later changes to them "
                                    "are not replicated", database))
    return copied_bytes, copy_seconds, schema_file


def server_failure(plan: Plan, database: str, exc: psycopg.Error) -> MigrationFailed:
    """A server error during init, as a user-facing error (nothing secret, a way forward)."""
    message = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
    message = plan.target.redact(plan.source.redact(message))
    if "snapshot" in message:
        remedy = ("The source closed the connection that held the copy's snapshot (restart, failover or a "
                  "network cut). Run init again: it starts this database over under a new snapshot.")
    elif isinstance(exc, psycopg.OperationalError):
        remedy = "A server connection broke. Check both servers are up and reachable, then run init again."
    else:
        remedy = "Fix the cause on the server named above, then run init again (it continues where it can)."
    return MigrationFailed(f"{database}: {message}", remedy)


def _undo(plan: Plan, database: str, created: list[str], emit: Emit, *, interrupted: bool = False) -> None:
    """After a failure or an interruption (Ctrl-C, SIGTERM, the app's Cancel: all the same):
    drop the replication objects this run created, and say so. What earlier runs finished is
    left alone, and the record says "failed", so the next run continues."""
    if not created:
        return
    try:
        removed = teardown_database(plan, database, emit)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, PgtideError) else type(exc).__name__
        emit(Log("error", f"could not clean up after the failure: {reason}; run `pgtide teardown` once the "
                          "servers are reachable", database))
        return
    what = "the run was interrupted" if interrupted else "the run failed"
    emit(Log("warning", f"{what}; removed " + (", ".join(removed) or "nothing") + "; running it again continues",
             database))


# -- sync (server-side initial copy, or data already on the target) ----------------------------------


def sync(plan: Plan, *, scope: Scope | None = None, emit: Emit = discard, copy_data: bool = True) -> list[DatabaseResult]:
    """Publication + subscription, PostgreSQL doing the initial copy (``copy_data``)."""
    if scope is None:
        scope = build_scope(plan.source, plan.selection, replicate=True)
    store = JobStore(naming.migration_id(plan.source, plan.target))
    store.record_plan(plan, scope)
    return [_sync_database(plan, db, store, emit, initial_copy=copy_data, schema=False) for db in scope.databases]


def _sync_database(plan: Plan, db: DatabaseScope, store: JobStore, emit: Emit, *, initial_copy: bool,
                   schema: bool = True, replicate: bool = True) -> DatabaseResult:
    """One database without a slot snapshot: the schema (unless ``schema`` is False: it is already
    on the target), then publication and subscription (unless ``replicate`` is False)."""
    database = db.name
    names = naming.replication_names(plan.source, plan.target, database)
    source_db = plan.source.with_dbname(database)
    started = time.monotonic()
    server_version = _server_version(source_db)
    if schema:
        decision = target_decision(plan, db, store.database(database) if plan.options.resume else {})
        if decision.action is TargetAction.ALREADY_DONE:
            emit(Log("info", f"target database {decision.observed}", database))
            done = store.state(database) or DatabaseState.STREAMING
            return DatabaseResult(database, done.value, len(db.tables), 0, 0, 0.0)
        with _phase(emit, database, "target"):
            created = prepare_target(plan, database, decision, emit)
        store.transition(database, DatabaseState.COPYING, created_database=created, slot=names.slot)
        workdir = workdir_for(plan, database)
        with _phase(emit, database, "schema"):
            _copy_schema(plan, db, workdir / "schema.dump", server_version, emit, copy_rows=not replicate)
    elif not database_exists(plan.target, database):
        raise InputError(f"target database {database!r} does not exist",
                         "sync expects the schema on the target already; use `pgtide init --copy server` to "
                         "create it, or create the schema first.")
    if not replicate:
        store.transition(database, DatabaseState.COPIED, finished_at=time.time())
        return DatabaseResult(database, DatabaseState.COPIED.value, len(db.tables), 0, 0, time.monotonic() - started)
    _replicate(plan, db, names, store, emit, initial_copy=initial_copy)
    return DatabaseResult(database, STATUS_STREAMING, len(db.tables), 0, 0, time.monotonic() - started)


def _copy_schema(plan: Plan, db: DatabaseScope, schema_file: Path, server_version: int, emit: Emit, *,
                 copy_rows: bool) -> None:
    """The schema under a snapshot exported by a plain transaction: no slot needs to match it,
    since the subscription's own initial copy moves the rows.

    With ``copy_rows`` (nothing replicates, e.g. only unlogged tables) the rows are copied
    once here, under that same snapshot, before the post-data section builds the indexes.
    """
    database = db.name
    source_db = plan.source.with_dbname(database)
    with connect(source_db) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot_name = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        dump_schema(plan, db, snapshot_name, schema_file, server_version // 10000)
        restore_section(plan, database, schema_file, "pre-data")
        if copy_rows and any(t.copies_rows for t in db.tables):
            copy_tables(source_db, plan.target.with_dbname(database), database,
                        Snapshot(slot="", consistent_point="", name=snapshot_name), db.tables,
                        jobs=plan.options.jobs, emit=emit, cancel=CancelToken())
        conn.execute("COMMIT")
    restore_section(plan, database, schema_file, "post-data", jobs=plan.options.jobs)


def _replicate(plan: Plan, db: DatabaseScope, names: naming.ReplicationNames, store: JobStore, emit: Emit, *,
               initial_copy: bool) -> None:
    """Publication, then a new subscription (or the running one refreshed); the database is streaming."""
    database = db.name
    created_here: list[str] = []
    subscribed = _subscription_exists(plan, database, names.subscription)
    try:
        with _phase(emit, database, "publication"):
            action = ensure_publication(plan.source.with_dbname(database), names.publication, replicated_tables(db))
            if action == "created":
                created_here.append("publication")
            emit(Log("info", f"publication {names.publication} {action}", database))
        with _phase(emit, database, "sync"):
            if subscribed:
                _refresh_subscription(plan, database, names.subscription, copy_data=initial_copy)
                emit(Log("info", f"subscription {names.subscription} refreshed", database))
            else:
                create_subscription(plan, database, names, copy_data=initial_copy, create_slot=True, emit=emit)
                created_here.append("subscription")
        store.transition(database, DatabaseState.STREAMING, slot=names.slot, finished_at=time.time())
    except BaseException as exc:
        # A replication that was already running stays as it is; a new one is removed whole
        # (CREATE SUBSCRIPTION may have made the slot on the source before failing).
        if not subscribed:
            _undo(plan, database, created_here or ["subscription"], emit)
        if isinstance(exc, psycopg.Error):
            raise server_failure(plan, database, exc) from None
        raise


def _refresh_subscription(plan: Plan, database: str, name: str, *, copy_data: bool) -> None:
    """Let a running subscription pick up the publication's current tables."""
    with connect(plan.target.with_dbname(database)) as conn:
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})").format(
            sql.Identifier(name), sql.SQL("true" if copy_data else "false")))


# -- a running subscription: re-copy tables, enable after an error, skip a failing transaction ------


def _subscription_row(conn: psycopg.Connection[Any], name: str) -> tuple[int, bool, int | None] | None:
    """(oid, enabled, apply worker pid) of the subscription in this database."""
    row = conn.execute(
        "SELECT s.oid, s.subenabled, (SELECT w.pid FROM pg_stat_subscription w WHERE w.subid = s.oid "
        "AND w.relid IS NULL AND w.pid IS NOT NULL LIMIT 1) FROM pg_subscription s WHERE s.subname = %s "
        "AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())", [name]).fetchone()
    return None if row is None else (int(row[0]), bool(row[1]), row[2])


def _require_subscription(conn: psycopg.Connection[Any], database: str, name: str) -> tuple[int, bool, int | None]:
    row = _subscription_row(conn, name)
    if row is None:
        raise InputError(f"{database}: no pgtide subscription {name} on the target",
                         "Start the migration first (`pgtide init` or `pgtide sync`).", title="Not replicating")
    return row


def _disable_and_wait(conn: psycopg.Connection[Any], name: str, *, timeout: float = 60.0) -> None:
    """DISABLE, then wait until the apply worker is gone (it exits at its next message)."""
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
    deadline = time.monotonic() + timeout
    while True:
        row = _subscription_row(conn, name)
        if row is None or row[2] is None:
            return
        if time.monotonic() > deadline:
            raise MigrationFailed(f"the apply worker of {name} is still running {timeout:.0f} s after DISABLE",
                                  "Check the target's log; run the command again once the worker has stopped.")
        time.sleep(0.1)


def _empty_table(conn: psycopg.Connection[Any], table: tuple[str, str]) -> None:
    """Delete every row of a target table, as the apply worker would: no FK triggers fire
    (other tables' rows that reference it are the source's, and stay)."""
    with conn.transaction():
        try:
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            pass  # without the right, referencing rows make the DELETE fail: the error says which
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(*table)))


def recopy_tables(plan: Plan, database: str, tables: list[tuple[str, str]], *, emit: Emit = discard) -> list[str]:
    """Copy these tables again, each under a fresh snapshot of its own, while the rest streams.

    For a table whose rows on the target no longer fit the source's definition (a type change,
    a dropped column). The subscription's own table copy does it, gap-free: with the apply
    worker stopped, the target table is emptied and given the source's columns; the table
    leaves the publication and the subscription (REFRESH); emptied again (what the worker
    applied meanwhile); then it rejoins the publication, with the same row filter, and
    ``REFRESH PUBLICATION WITH (copy_data = true)`` copies it under a new snapshot and streams
    it from that point.
    """
    from ..monitor.drift import read_fingerprints, recopy_statements
    from .schema_sync import _run_qualified, refresh_publication

    names = naming.replication_names(plan.source, plan.target, database)
    source_db, target_db = plan.source.with_dbname(database), plan.target.with_dbname(database)
    done: list[str] = []
    with connect(source_db) as source, connect(target_db) as target:
        _require_subscription(target, database, names.subscription)
        published = {(r[0], r[1]): r[2] for r in source.execute(
            "SELECT n.nspname, c.relname, " + ("pg_get_expr(pr.prqual, pr.prrelid)"
                                               if source.info.server_version >= 150000 else "NULL::text")
            + " FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
            "JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE p.pubname = %s", [names.publication])}
        unknown = [t for t in tables if t not in published]
        if unknown:
            raise InputError(f"{database}: not in the migration's publication: "
                             + ", ".join(format_qualified_name(t) for t in unknown),
                             "Name tables that replicate (`pgtide schema diff` lists the ones to re-copy; a new table "
                             "is added by `pgtide schema apply`).", title="Unknown table")
        ours = {t.qualified: t for t in read_fingerprints(source, schemas=sorted({s for s, _ in tables}))}
        theirs = {t.qualified: t for t in read_fingerprints(target, schemas=sorted({s for s, _ in tables}))}
        _disable_and_wait(target, names.subscription)
        try:
            for table in tables:
                _empty_table(target, table)
                for statement in recopy_statements(ours[table], theirs[table]):
                    _run_qualified(target, statement)
                    emit(Log("info", f"target: {statement}", database))
            source.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(
                sql.Identifier(names.publication), sql.SQL(", ").join(sql.Identifier(*t) for t in tables)))
            target.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(names.subscription)))
            refresh_publication(plan, database, names.subscription, copy_data=False)
            # A worker started by ENABLE may have cached the tables as ready before the REFRESH:
            # stop it again so the next one reads their new state.
            _disable_and_wait(target, names.subscription)
            for table in tables:
                _empty_table(target, table)
            pin_quoting(source, search_path=True)
            items = [sql.SQL("TABLE {}").format(sql.Identifier(*t)) if not published[t] else
                     sql.SQL("TABLE {} WHERE ({})").format(sql.Identifier(*t), deparsed(published[t] or ""))
                     for t in tables]
            execute_parsed(source, sql.SQL("ALTER PUBLICATION {} ADD {}").format(
                sql.Identifier(names.publication), sql.SQL(", ").join(items)))
        finally:
            target.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(names.subscription)))
    refresh_publication(plan, database, names.subscription, copy_data=True)
    forget_last_verify(plan, f"{database}: tables copied again", emit)
    for table in tables:
        shown = format_qualified_name(table)
        emit(Log("info", f"{shown}: emptied on the target and copied again by the subscription", database))
        done.append(shown)
    return done


def forget_last_verify(plan: Plan, why: str, emit: Emit = discard) -> None:
    """The target changed outside replication (a re-copy, a skipped transaction, schema apply):
    the recorded verify no longer speaks for it, so cutover's preflight runs a full one."""
    store = JobStore(naming.migration_id(plan.source, plan.target))
    if store.meta().get("last_verify") is not None:
        store.record_meta("last_verify", None)
        emit(Log("info", f"the last verify no longer counts ({why}): cutover verifies again"))


def enable_subscription(plan: Plan, database: str, *, emit: Emit = discard) -> bool:
    """Enable the subscription again (after fixing what stopped it); False when it was enabled."""
    names = naming.replication_names(plan.source, plan.target, database)
    with connect(plan.target.with_dbname(database)) as conn:
        _oid, enabled, _pid = _require_subscription(conn, database, names.subscription)
        if enabled:
            return False
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(names.subscription)))
    emit(Log("info", f"subscription {names.subscription} enabled", database))
    return True


def skip_failed_transaction(plan: Plan, database: str, lsn: int, *, emit: Emit = discard) -> None:
    """``ALTER SUBSCRIPTION … SKIP (lsn = …)`` then enable: the failing remote transaction is
    thrown away whole on the target — its rows are lost there, verify names them."""
    from ..monitor.state import format_lsn

    names = naming.replication_names(plan.source, plan.target, database)
    with connect(plan.target.with_dbname(database)) as conn:
        if conn.info.server_version < 150000:
            raise InputError("skipping a transaction needs PostgreSQL 15 or newer on the target",
                             "Fix the cause on the target (e.g. remove the conflicting row) instead.")
        _require_subscription(conn, database, names.subscription)
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SKIP (lsn = {})").format(
            sql.Identifier(names.subscription), sql.Literal(format_lsn(lsn))))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(names.subscription)))
    forget_last_verify(plan, f"{database}: a transaction was skipped", emit)
    emit(Log("warning", f"subscription {names.subscription}: the transaction finishing at {format_lsn(lsn)} is "
                        "skipped on the target; its changes are lost there (run `pgtide verify`)", database))
