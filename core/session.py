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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .infra.errors import InputError
from .jobs.state import DatabaseState, parse_state
from .jobs.store import JobStore
from .model.plan import Plan
from .model.selection import Selection
from .replication import naming


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

    def databases(self, requested: Sequence[str] | None = None) -> tuple[str, ...]:
        """The databases this command acts on: those asked for, else the recorded live ones,
        else what the selection picks on the source."""
        if requested:
            return tuple(requested)
        from .catalog.scope import with_database_from_url
        from .monitor.poll import selected_databases

        recorded = [name for name, entry in sorted(self.store.databases().items())
                    if parse_state(entry.get("status")) not in (None, DatabaseState.TORN_DOWN)]
        # The same database rule as everywhere (a source naming a database means that one).
        wanted = with_database_from_url(self.plan.source, self.plan.selection)
        chosen = tuple(name for name in recorded if wanted.includes_database(name))
        return chosen or selected_databases(self.plan)


def _rules(selection: Selection) -> list[dict[str, object]]:
    """A selection's rules without where each came from (a flag, a file, a record)."""
    data = selection.to_dict()
    cleaned: list[dict[str, object]] = []
    for key in ("include_databases", "exclude_databases"):
        cleaned += [{"kind": key, "name": entry["name"]} for entry in data[key]]
    cleaned += [{k: v for k, v in rule.items() if k not in ("origin", "layer")} for rule in data["tables"]]
    return cleaned
