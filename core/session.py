"""One migration, as every command sees it: its identity, its record, and the rules they share.

A command starts from what the user typed (a plan from flags, a profile, or ``--migration
ID``) and asks the session what it acts on:

- the migration's id, from the servers' identities (any spelling of the same servers finds
  the same migration: replication/identity.py);
- the plan: the recorded one when the user gave no selection of their own — so verify knows
  which tables were schema-only or filtered — with a note when what was typed differs;
- the databases that are "this migration": the recorded ones (those not torn down), else
  what the selection picks on the source.

The target-reuse rule lives in engine/target.py and teardown's in engine/migrate.py; both
are reached through here by the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .infra.errors import InputError
from .infra.events import Log, discard
from .jobs.state import DatabaseState, parse_state
from .jobs.store import JobStore
from .model.plan import Plan
from .model.selection import Selection
from .replication import naming

if TYPE_CHECKING:
    from .catalog.scope import Scope
    from .engine.cutover import Cutover, CutoverOptions
    from .engine.migrate import DatabaseResult
    from .engine.validate import Report
    from .infra.events import CancelToken, Emit
    from .monitor.drift import DriftReport
    from .monitor.poll import Monitor
    from .verify.compare import VerifyOptions, VerifyReport


@dataclass
class MigrationSession:
    """A migration resolved for one command."""

    plan: Plan
    migration_id: str
    store: JobStore
    #: What the user should know about how the plan was chosen (shown by the front ends).
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, plan: Plan, *, selection_given: bool) -> MigrationSession:
        """The migration ``plan``'s servers form; the recorded plan wins for what the user left out."""
        migration = naming.migration_id(plan.source, plan.target)
        store = JobStore(migration)
        session = cls(plan, migration, store)
        recorded = store.recorded_plan()
        if recorded is None:
            if JobStore.exists(migration):
                session.notes.append(f"migration {migration} was recorded by pgtide 0.1 (no plan kept): acting on "
                                     "the servers and selection given; the next init or sync records the plan")
            return session
        if not selection_given:
            session.plan = replace(plan, selection=recorded.selection)
            if recorded.selection != Selection():
                session.notes.append(f"using the selection recorded for migration {migration}")
        elif _rules(plan.selection) != _rules(recorded.selection):
            session.notes.append(
                f"the selection given differs from the one recorded for migration {migration}: using the one "
                "given (leave the selection flags out to act on the recorded one)")
        return session

    @classmethod
    def from_record(cls, migration: str) -> MigrationSession:
        """``--migration ID``: everything from the record."""
        if not JobStore.exists(migration):
            raise InputError(f"no migration {migration!r} is recorded on this machine",
                             "Run `pgtide migrations` to list the recorded ones.", title="Unknown migration")
        store = JobStore(migration)
        plan = store.recorded_plan()
        if plan is None:
            raise InputError(f"migration {migration} was recorded by pgtide 0.1, which kept no plan",
                             "Pass --source and --target as you did then.", title="Old record")
        return cls(plan, migration, store)

    def databases(self, requested: Sequence[str] | None = None, *, include_cut_over: bool = False) -> tuple[str, ...]:
        """The databases this command acts on: those asked for, else the recorded live ones
        (cut-over ones only when asked: nothing replicates into them), else what the
        selection picks on the source."""
        if requested:
            return tuple(requested)
        from .catalog.scope import with_database_from_url
        from .monitor.poll import selected_databases

        ended = {None, DatabaseState.TORN_DOWN} | (set() if include_cut_over else {DatabaseState.CUT_OVER})
        recorded = [name for name, entry in sorted(self.store.databases().items())
                    if parse_state(entry.get("status")) not in ended]
        # The same database rule as everywhere (a source naming a database means that one).
        wanted = with_database_from_url(self.plan.source, self.plan.selection)
        chosen = tuple(name for name in recorded if wanted.includes_database(name))
        if not chosen and any(parse_state(entry.get("status")) is DatabaseState.CUT_OVER
                              and wanted.includes_database(name) for name, entry in self.store.databases().items()):
            return ()  # a finished migration: nothing of it to watch, verify or set up
        return chosen or selected_databases(self.plan)

    # -- the commands, as methods of the migration they act on --------------------------------
    # The CLI and the app's services call these; the policies they follow live in core (the
    # databases above, the target rule in engine/target.py, teardown's in engine/migrate.py),
    # never in app/ or screens/.

    def validate(self, *, emit: Emit = discard) -> Report:
        """validate needs no session to run (it reports unreachable servers as checks); this is
        the same for a session already open."""
        from .engine.validate import validate as run

        return run(self.plan, emit=emit)

    def init(self, *, scope: Scope | None = None, emit: Emit = discard,
             cancel: CancelToken | None = None) -> list[DatabaseResult]:
        from .engine import migrate

        return migrate.init(self.plan, scope=scope, emit=emit, cancel=cancel)

    def sync(self, *, scope: Scope | None = None, emit: Emit = discard,
             copy_data: bool = True) -> list[DatabaseResult]:
        from .engine import migrate

        return migrate.sync(self.plan, scope=scope, emit=emit, copy_data=copy_data)

    def monitor(self, databases: Sequence[str] | None = None, **settings: Any) -> Monitor:
        from .monitor.poll import Monitor

        return Monitor.from_plan(self.plan, self.databases(databases), **settings)

    def verify(self, *, tables: Sequence[str] | None = None, options: VerifyOptions | None = None,
               on_event: Callable[[Any], None] | None = None, cancel: CancelToken | None = None) -> VerifyReport:
        """Verify the recorded migration; a verify of every table is recorded as its last one."""
        from .engine import since_verify
        from .verify.compare import verify_plan

        # Read before the comparison starts: a row or table written while verify runs counts
        # as written since, so a cutover verifies it again (engine/since_verify.py).
        marks = since_verify.marks(self.plan.source, self.plan.target, self.databases()) if not tables else None
        report = verify_plan(self.plan, tables=tables or (), options=options, on_event=on_event, cancel=cancel)
        if marks is not None:
            self.store.record_verify({"ok": report.ok, **report.summary(), "marks": marks})
        return report

    # -- keeping the sync healthy (engine/schema_sync.py, engine/migrate.py, engine/fixes.py) -----

    def drift(self, databases: Sequence[str] | None = None) -> list[DriftReport]:
        from .engine.schema_sync import schema_diff

        return schema_diff(self.plan, self.databases(databases))

    def schema_apply(self, report: DriftReport, *, emit: Emit = discard) -> list[str]:
        from .engine.schema_sync import schema_apply

        return schema_apply(self.plan, report, emit=emit)

    def recopy(self, database: str, tables: list[tuple[str, str]], *, emit: Emit = discard) -> list[str]:
        from .engine import migrate

        return migrate.recopy_tables(self.plan, database, tables, emit=emit)

    def enable(self, database: str, *, emit: Emit = discard) -> bool:
        from .engine import migrate

        return migrate.enable_subscription(self.plan, database, emit=emit)

    def skip_failed_transaction(self, database: str, lsn: int, *, emit: Emit = discard) -> None:
        from .engine import migrate

        migrate.skip_failed_transaction(self.plan, database, lsn, emit=emit)

    def cutover(self, options: CutoverOptions | None = None, *, emit: Emit = discard,
                cancel: CancelToken | None = None) -> Cutover:
        """The cutover of this migration: call ``preflight()``, show it, then ``run()``."""
        from .engine.cutover import Cutover

        return Cutover(self, options, emit=emit, cancel=cancel)

    def teardown(self, databases: Sequence[str] | None = None, *, keep_sequences: bool = False,
                 emit: Emit = discard) -> list[str]:
        """Remove pgtide's replication objects. A database that was not cut over first gets
        its target sequences set past the source's and its materialized views refreshed, so
        the application can write there (unless ``keep_sequences``); a cut-over one loses its
        reverse subscription and the fence on the source is lifted."""
        from .engine import cutover, migrate

        chosen = list(databases) if databases else sorted(self.store.databases())
        removed: list[str] = []
        last = self.store.meta().get("last_verify")
        if isinstance(last, dict) and not last.get("ok"):
            emit(Log("warning", "the last verify found differences: the target you keep is not identical to "
                                "the source (run `pgtide verify` to list them)"))
        live = [d for d in chosen if self.store.state(d) in (DatabaseState.STREAMING, DatabaseState.COPIED)]
        if not keep_sequences and live:
            cutover.prepare_target_for_writes(self.plan, live, emit=emit)
        removed += cutover.end_cutover(self, [d for d in chosen if self.store.state(d) is DatabaseState.CUT_OVER],
                                       emit=emit)
        return removed + migrate.teardown(self.plan, chosen if databases else None, emit=emit)


def _rules(selection: Selection) -> list[dict[str, object]]:
    """A selection's rules without where each came from (a flag, a file, a record)."""
    data = selection.to_dict()
    cleaned: list[dict[str, object]] = []
    for key in ("include_databases", "exclude_databases"):
        cleaned += [{"kind": key, "name": entry["name"]} for entry in data[key]]
    cleaned += [{k: v for k, v in rule.items() if k not in ("origin", "layer")} for rule in data["tables"]]
    return cleaned
