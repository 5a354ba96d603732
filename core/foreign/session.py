"""A migration from a foreign source, as every command sees it: validate, estimate, init,
sync, status, verify and teardown, with the same record and states as a PostgreSQL one.

The record (jobs/store.py) keeps the plan without secrets under ``foreign_plan``, one
database entry (the target database) with per-table copy state and snapshot positions, and
the stream's progress. The stream's own position lives on the target, next to the data it
describes (apply.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..engine.validate import Check, Report
from ..infra.db import connect
from ..infra.errors import CannotStream, InputError, PgtideError
from ..infra.events import CancelToken, CheckReported, Emit, Log, discard
from ..jobs.state import DatabaseState
from ..jobs.store import JobStore
from .apply import Applier, applied_position, ensure_bookkeeping, forget_position
from .drivers import open_source
from .layout import TargetTable, target_tables
from .load import build_keys, check_casts, copy_all, create_tables, ensure_database, existing_tables, treatment
from .plan import ForeignPlan
from .refresh import RefreshResult, refresh_once
from .source import CaptureCheck, SourceAdapter, SourceTable
from .verify import ForeignVerifyReport, TableVerdict, verify_tables

RECORD_FORMAT = "foreign-1"


def is_foreign_record(store: JobStore) -> bool:
    return store.meta().get("format") == RECORD_FORMAT


@dataclass
class ForeignStatus:
    migration_id: str
    state: str | None
    mode: str
    tables: dict[str, dict[str, Any]]
    position: str | None
    lag_seconds: float | None
    applied_at: float | None
    worker: dict[str, Any] = field(default_factory=dict)
    last_refresh: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.migration_id, "state": self.state, "mode": self.mode, "tables": self.tables,
                "position": self.position, "lag_seconds": self.lag_seconds, "applied_at": self.applied_at,
                "worker": self.worker, "last_refresh": self.last_refresh}


class ForeignSession:
    def __init__(self, plan: ForeignPlan, store: JobStore | None = None) -> None:
        self.plan = plan
        self.migration_id = plan.migration_id
        self.store = store or JobStore(self.migration_id)

    @classmethod
    def from_record(cls, migration: str) -> ForeignSession:
        if not JobStore.exists(migration):
            raise InputError(f"no migration {migration!r} is recorded on this machine",
                             "Run `pgtide migrations` to list the recorded ones.", title="Unknown migration")
        store = JobStore(migration)
        data = store.meta().get("foreign_plan")
        if not isinstance(data, dict):
            raise InputError(f"migration {migration} is not from a foreign source",
                             "Use the command without --migration, or with a PostgreSQL migration's id.")
        return cls(ForeignPlan.from_dict(data), store)

    def open_adapter(self) -> SourceAdapter:
        return open_source(self.plan.source)

    # -- what the source holds --------------------------------------------------------------

    def source_tables(self, adapter: SourceAdapter) -> list[SourceTable]:
        tables = adapter.tables()
        self.plan.check_names(tables)
        return [t for t in tables if self.plan.picks(t)]

    def targets(self, adapter: SourceAdapter, casts: dict[str, str] | None = None) -> list[TargetTable]:
        return target_tables(self.plan, self.source_tables(adapter),
                             casts if casts is not None else check_casts(self.plan.target, dict(self.plan.casts)))

    # -- validate: reads both sides, changes nothing ------------------------------------------

    def validate(self, *, emit: Emit = discard) -> Report:
        report = Report()

        def add(name: str, status: str, observed: str, remedy: str = "") -> None:
            check = Check(name, status, observed, remedy)  # type: ignore[arg-type]
            report.checks.append(check)
            emit(CheckReported(name, status, observed, remedy))  # type: ignore[arg-type]

        try:
            adapter = self.open_adapter()
        except PgtideError as exc:
            add("source", "error", exc.cause, exc.remedy)
            self._validate_target(add, set())
            return report
        try:
            add("source", "ok", f"{self.plan.source.redacted()} ({self.plan.source.kind})")
            try:
                tables = self.source_tables(adapter)
            except InputError as exc:
                add("selection", "error", exc.cause, exc.remedy)
                return report
            if not tables:
                add("selection", "error", "the selection picks no table",
                    "Check --include-tables / --exclude-tables against the source's tables.")
                return report
            add("selection", "ok", f"{len(tables)} table(s), about {sum(t.rows for t in tables):,} rows")
            for table in tables:
                where = self.plan.filters.get(table.name)
                if where:
                    try:
                        adapter.check_filter(table, where)
                        add(f"filter {table.name}", "ok", f"the source accepts the row filter on {table.name}")
                    except InputError as exc:
                        add("selection", "error", exc.cause, exc.remedy)
            targets: list[TargetTable] = []
            try:
                casts = check_casts(self.plan.target, dict(self.plan.casts))
                targets = target_tables(self.plan, tables, casts)
                add("layout", "ok", f"{self.plan.layout} layout for {len(targets)} table(s)")
            except InputError as exc:
                add("layout", "error", exc.cause, exc.remedy)
            except PgtideError:
                pass  # the target check below says why the target could not be asked
            limited = {t.name for t in tables if self.plan.mode(t.name) != "full"}
            orphaned = sorted({f"{t.name} → {fk.ref_table}" for t in targets if t.layout == "typed"
                               for fk in t.source.foreign_keys if fk.ref_table in limited and t.name != fk.ref_table})
            if orphaned:
                add("foreign keys", "warning", f"a filtered or schema-only table is referenced: {', '.join(orphaned)}",
                    "Rows whose parent the filter leaves out are copied anyway, and that foreign key is not "
                    "created (init says which). Filter the referencing table the same way to keep it.")
            keyless = [t.name for t in targets if not t.key_columns]
            if keyless:
                add("keys", "warning", f"no primary or unique key on the target: {', '.join(keyless[:8])}",
                    "These tables are copied; a refresh reloads them whole and a change stream cannot apply "
                    "changes to them by key. Add a primary key on the source, or use --layout jsonb (its id "
                    "comes from the rowid or the key).")
            add("consistency", "ok", adapter.consistency())
            capture = adapter.capture_check()
            if capture.ok:
                add("change capture", "ok", capture.observed)
            elif self.plan.refresh_every:
                add("change capture", "ok", f"{capture.observed}; --refresh-every "
                    f"{self.plan.refresh_every:g}s re-reads the tables instead")
            else:
                add("change capture", "warning", capture.observed,
                    capture.remedy or "One-shot copies work; pass --refresh-every INTERVAL to keep re-reading.")
            self._validate_target(add, {t.name for t in tables})
        finally:
            adapter.close()
        return report

    def _validate_target(self, add: Callable[..., None], names: set[str]) -> None:
        target = self.plan.target
        try:
            with connect(target.with_dbname("postgres")) as conn:
                version = conn.execute("SHOW server_version").fetchone()
                exists = conn.execute("SELECT has_database_privilege(datname, 'CREATE') FROM pg_database "
                                      "WHERE datname = %s", (target.dbname,)).fetchone()
                can_create = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles "
                                          "WHERE rolname = current_user").fetchone()
        except PgtideError as exc:
            add("target", "error", exc.cause, exc.remedy)
            return
        add("target", "ok", f"{target.redacted()} (PostgreSQL {version[0] if version else '?'})")
        if exists is None:
            if can_create and can_create[0]:
                add("target database", "ok", f"{target.dbname!r} does not exist yet: init creates it")
            else:
                add("target database", "error", f"{target.dbname!r} does not exist and this role cannot create it",
                    f"Create it (CREATE DATABASE \"{target.dbname}\") or use a role with CREATEDB.")
            return
        if not exists[0]:
            add("target database", "error", f"this role cannot create tables in {target.dbname!r}",
                f"GRANT CREATE ON DATABASE \"{target.dbname}\" TO the role pgtide connects as.")
            return
        recorded = set(self.store.database(self.plan.database).get("tables", {}))
        clash = sorted((existing_tables(target, self.plan.target_schema) & names) - recorded)
        if clash and not self.plan.drop_existing:
            add("target tables", "error", f"{len(clash)} table(s) already exist on the target and are not from "
                f"this migration: {', '.join(clash[:8])}",
                "Drop them, pick another --target-schema, or pass --drop-existing to replace them.")
        else:
            add("target database", "ok", f"{target.dbname!r} is ready")

    # -- init: copy, then keys; records positions for the stream ------------------------------

    def init(self, *, emit: Emit = discard, cancel: CancelToken | None = None) -> list[str]:
        plan = self.plan
        database = plan.database
        adapter = self.open_adapter()
        try:
            tables = self.targets(adapter)
        finally:
            adapter.close()
        self.record_plan()
        ensure_database(plan.target, emit)
        recorded = self.store.database(database).get("tables", {})
        present = existing_tables(plan.target, plan.target_schema)
        ours = {name for name, entry in recorded.items() if entry.get("state")}
        clash = sorted((present & {t.name for t in tables}) - ours)
        if clash and not plan.drop_existing:
            raise InputError(f"{len(clash)} table(s) already exist on the target: {', '.join(clash[:8])}",
                             "Drop them, pick another --target-schema, or pass --drop-existing to replace them.",
                             title="Target not empty")
        replace = set(clash)
        for table in tables:
            entry = recorded.get(table.name, {})
            if entry.get("state") in ("copied", "copying") and entry.get("treatment") != treatment(plan, table):
                # Its filter, layout, casts or mode changed since it was copied: copy it again.
                emit(Log("info", f"{table.name}: its filter, layout or casts changed since it was copied: "
                                 "copying it again", database))
                replace.add(table.name)
                self.store.table_update(database, table.name, state=None)
        if not plan.resume:
            replace |= {t.name for t in tables} & present
            for name in recorded:
                self.store.table_update(database, name, state=None)
        self.store.transition(database, DatabaseState.COPYING, kind="foreign")
        try:
            create_tables(plan.target, tables, replace=replace, emit=emit)
            # Ours from now on: a rerun after a crash continues into them instead of refusing.
            for table in tables:
                if not recorded.get(table.name, {}).get("state") or table.name in replace:
                    self.store.table_update(database, table.name, state="created")
            results = copy_all(plan, self.open_adapter, tables, self.store, emit=emit, cancel=cancel)
            build_keys(plan, tables, emit=emit)
            with connect(plan.target) as conn:
                ensure_bookkeeping(conn)
        except BaseException:
            self.store.transition(database, DatabaseState.FAILED)
            raise
        positions = [(entry.get("taken_at", 0), entry.get("position"))
                     for entry in self.store.database(database).get("tables", {}).values() if entry.get("position")]
        start = min(positions)[1] if positions else None
        self.store.transition(database, DatabaseState.COPIED, capture_start=start,
                              copied_rows=sum(r.rows for r in results))
        copied = sum(1 for r in results if not r.skipped)
        emit(Log("info", f"copied {copied} table(s), {sum(r.rows for r in results):,} rows", database))
        return [r.name for r in results]

    def record_plan(self) -> None:
        store, plan = self.store, self.plan
        store.record_meta("format", RECORD_FORMAT)
        store.record_meta("foreign_plan", plan.to_dict())
        for side, url, display in (("source", plan.source.to_url(), plan.source.redacted()),
                                   ("target", plan.target.to_url(), plan.target.redacted())):
            store.record_meta(side, {"url": url, "display": display})
        if "created_at" not in store.meta():
            store.record_meta("created_at", time.time())
        store.record_meta("recorded_at", time.time())

    def start_worker(self, *, systemd: bool = False) -> int:
        """``pgtide sync`` detached: refuse at once what the worker would fail on (a worker
        already running, a copy not finished, a source that cannot stream without a refresh
        interval), record the plan, spawn the migration's worker (the source password goes
        through its pipe) and return its pid."""
        from ..jobs.worker import lock_held, spawn

        migration = self.migration_id
        if lock_held(migration):
            raise InputError(f"a worker of migration {migration} is already running",
                             f"It keeps the target in sync already; `pgtide stop {migration}` ends it.",
                             title="Worker running")
        state = self.store.state(self.plan.database)
        if state not in (DatabaseState.COPIED, DatabaseState.STREAMING):
            raise InputError(f"migration {migration} has not finished its copy (state: {state or 'none'})",
                             f"Run `pgtide init --migration {migration}` first (it resumes an interrupted copy).",
                             title="Not copied")
        if not self.plan.refresh_every:
            capture = self.capture()
            if not capture.ok:
                raise CannotStream(f"changes cannot stream from this source: {capture.observed}",
                                   (capture.remedy + " " if capture.remedy else "")
                                   + f"Or re-read the tables every interval: `pgtide sync --migration {migration} "
                                   "--refresh-every 30s`.")
        self.record_plan()
        job = {"command": "foreign-sync", "source_password": self.plan.source.resolved_password(),
               "target": self.plan.target.conninfo(), "refresh_every": self.plan.refresh_every}
        return spawn(migration, job, systemd=systemd)

    # -- sync: stream changes (or refresh) until stopped -----------------------------------

    def capture(self) -> CaptureCheck:
        adapter = self.open_adapter()
        try:
            return adapter.capture_check()
        finally:
            adapter.close()

    def sync(self, *, stop: threading.Event, emit: Emit = discard,
             on_progress: Callable[[dict[str, Any]], None] | None = None,
             on_started: Callable[[str], None] | None = None) -> None:
        """Keep the target in step with the source until ``stop`` is set: the change log when
        the source has one (and no --refresh-every was asked), else a refresh every interval."""
        plan, database = self.plan, self.plan.database
        state = self.store.state(database)
        if state not in (DatabaseState.COPIED, DatabaseState.STREAMING):
            raise InputError(f"migration {self.migration_id} has not finished its copy (state: {state or 'none'})",
                             "Run `pgtide init` first (it resumes an interrupted copy).", title="Not copied")
        adapter = self.open_adapter()
        try:
            tables = self.targets(adapter)
            capture = adapter.capture_check()
            if plan.refresh_every or not capture.ok:
                if not plan.refresh_every:
                    raise CannotStream(f"changes cannot stream from this source: {capture.observed}",
                                       capture.remedy + " Or pass --refresh-every INTERVAL to re-read the tables.")
                self.store.transition(database, DatabaseState.STREAMING, sync_mode="refresh")
                if on_started is not None:
                    on_started("refresh")
                self._refresh_loop(adapter, tables, stop, emit, on_progress)
            else:
                self.store.transition(database, DatabaseState.STREAMING, sync_mode="stream")
                if on_started is not None:
                    on_started("stream")
                self._stream(adapter, tables, stop, emit, on_progress)
        finally:
            adapter.close()

    def _refresh_loop(self, adapter: SourceAdapter, tables: list[TargetTable], stop: threading.Event,
                      emit: Emit, on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        interval = float(self.plan.refresh_every or 60)
        with connect(self.plan.target, pooled=False) as conn:
            applier = Applier(conn, {t.name: t for t in tables}, self.migration_id)
            while not stop.is_set():
                result: RefreshResult = refresh_once(self.plan, adapter, tables, applier)
                summary = {"mode": "refresh", "inserted": result.inserted, "updated": result.updated,
                           "deleted": result.deleted, "reloaded": result.reloaded,
                           "seconds": round(result.seconds, 3), "at": result.finished_at}
                self.store.record_meta("foreign_progress", summary)
                if result.changed or result.reloaded:
                    emit(Log("info", f"refresh: {result.inserted} inserted, {result.updated} updated, "
                                     f"{result.deleted} deleted", self.plan.database))
                if on_progress is not None:
                    on_progress(summary)
                stop.wait(interval)

    def _stream(self, adapter: SourceAdapter, tables: list[TargetTable], stop: threading.Event,
                emit: Emit, on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        keyed = {t.name: t for t in tables if t.key_columns}
        skipped = sorted({t.name for t in tables} - set(keyed))
        if skipped:
            emit(Log("warning", f"not kept in sync (no key): {', '.join(skipped)}", self.plan.database))
        with connect(self.plan.target, pooled=False) as conn:
            ensure_bookkeeping(conn)
            position, _ = applied_position(conn, self.migration_id)
            recorded = position or self.store.database(self.plan.database).get("capture_start")
            if not isinstance(recorded, str):
                raise PgtideError("no change-log position was recorded for this migration's copy",
                                  "Run `pgtide init --no-resume` to copy again with the change log on.")
            start: str = recorded
            applier = Applier(conn, keyed, self.migration_id)
            last_note = 0.0

            def changes() -> Any:
                nonlocal last_note
                for change in adapter.changes([t.source for t in keyed.values()], start, stop):
                    yield change
                    now = time.monotonic()
                    if change.position is not None and now - last_note > 1:
                        last_note = now
                        self._note_progress(applier, on_progress)

            # apply() returns when the iterator ends, i.e. when stop is set.
            while not stop.is_set():
                applier.apply(changes())
                self._note_progress(applier, on_progress)
                if not stop.is_set():
                    position, _ = applied_position(conn, self.migration_id)
                    start = position or start

    def _note_progress(self, applier: Applier, on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        totals = applier.totals
        lag = None if totals.source_committed_at is None else max(0.0, time.time() - totals.source_committed_at)
        summary = {"mode": "stream", "changes": totals.changes, "transactions": totals.transactions,
                   "position": totals.position, "lag_seconds": lag, "at": time.time()}
        self.store.record_meta("foreign_progress", summary)
        if on_progress is not None:
            on_progress(summary)

    # -- status, verify, teardown ----------------------------------------------------------

    def status(self) -> ForeignStatus:
        from ..jobs.worker import worker_info

        entry = self.store.database(self.plan.database)
        progress = self.store.meta().get("foreign_progress") or {}
        position: str | None = None
        committed: float | None = None
        applied: float | None = None
        try:
            with connect(self.plan.target) as conn:
                position, committed = applied_position(conn, self.migration_id)
        except (PgtideError, psycopg.Error):
            pass  # status still shows the record when the target is down
        worker = worker_info(self.migration_id)
        live = worker.alive
        lag = progress.get("lag_seconds") if live else None
        if live and progress.get("at"):
            applied = float(progress["at"])
        if live and committed is not None and progress.get("mode") == "stream":
            lag = max(0.0, time.time() - committed) if progress.get("lag_seconds") is None else lag
        return ForeignStatus(self.migration_id, entry.get("status"), str(entry.get("sync_mode") or "copy"),
                             entry.get("tables", {}), position or entry.get("capture_start"), lag, applied,
                             {"state": worker.state, "pid": worker.pid},
                             progress if progress.get("mode") == "refresh" else None)

    def verify(self, *, on_table: Callable[[TableVerdict], None] | None = None,
               cancel: CancelToken | None = None) -> ForeignVerifyReport:
        adapter = self.open_adapter()
        try:
            tables = self.targets(adapter)
        finally:
            adapter.close()
        report = verify_tables(self.plan, self.open_adapter, tables, on_table=on_table, cancel=cancel,
                               settle=lambda: time.sleep(2.0))
        self.store.record_verify({"ok": report.ok, **report.summary()})
        return report

    def teardown(self, *, emit: Emit = discard) -> list[str]:
        """Stop keeping the target in sync: the stream's bookkeeping goes, the tables stay. The
        source never had anything of pgtide's on it (no slot, trigger or table)."""
        removed: list[str] = []
        try:
            with connect(self.plan.target) as conn:
                forget_position(conn, self.migration_id)
                removed.append(f"{self.plan.database}: stream position")
        except PgtideError as exc:
            emit(Log("warning", f"the target could not be reached to remove the stream position: {exc.cause}"))
        if self.store.state(self.plan.database) is not None:
            self.store.transition(self.plan.database, DatabaseState.TORN_DOWN)
        return removed
