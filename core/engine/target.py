"""What init may do with a target database: the one rule, for validate and init alike.

validate reports the decision as a check; init acts on it. Both read the same facts from the
target and the same job record, and call :func:`decide_target`, which is pure: the table of
every recorded state against every kind of target is a unit test, so the two can never
disagree again (validate green, then init refusing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import InputError
from ..jobs.state import CONTINUABLE, UNFINISHED, DatabaseState, parse_state


@dataclass(frozen=True)
class TargetFacts:
    """What the target server says about one database."""

    exists: bool
    #: A few of its tables, views, ... (empty: nothing of the user's in it).
    objects: tuple[str, ...] = ()
    #: Subscriptions that apply changes into it.
    writers: tuple[str, ...] = ()


class TargetAction(str, Enum):
    CREATE = "create"
    USE_EMPTY = "use empty"
    #: Already streaming (or, with nothing to replicate, already copied): leave it.
    ALREADY_DONE = "already done"
    #: An interrupted run in a database pgtide did not create: empty its tables, copy again.
    CONTINUE_IN_PLACE = "continue in place"
    #: An unfinished run in a database pgtide created: drop and create it again.
    RECREATE_OURS = "recreate ours"
    DROP_AND_RECREATE = "drop and recreate"
    REFUSE_LIVE = "refuse: live replica"
    #: The cutover made it the application's database.
    REFUSE_CUT_OVER = "refuse: cut over"
    REFUSE_NOT_EMPTY = "refuse: not empty"


@dataclass(frozen=True)
class TargetDecision:
    action: TargetAction
    #: What validate shows, and the cause of the error init raises when refused.
    observed: str
    remedy: str = ""

    @property
    def refused(self) -> bool:
        return self.action in (TargetAction.REFUSE_LIVE, TargetAction.REFUSE_NOT_EMPTY, TargetAction.REFUSE_CUT_OVER)

    @property
    def drops(self) -> bool:
        return self.action in (TargetAction.RECREATE_OURS, TargetAction.DROP_AND_RECREATE)

    def error(self, database: str) -> InputError:
        title = {TargetAction.REFUSE_LIVE: "Target is a live replica",
                 TargetAction.REFUSE_CUT_OVER: "Target was cut over"}.get(self.action, "Target not empty")
        return InputError(f"target database {database!r} {self.observed}", self.remedy, title=title)


_LIVE_REMEDY = ("Continue that migration (pgtide init/sync with the same source and target), remove it with "
                "`pgtide teardown` first, or cut over. --drop-existing only replaces databases nothing "
                "replicates into.")


def decide_target(state: Mapping[str, Any], facts: TargetFacts, *, ours: str, resume: bool, drop_existing: bool,
                  replicates: bool, in_place: bool = True) -> TargetDecision:
    """The decision for one target database.

    ``state``: the job record's entry for it (ignored without ``resume``); ``ours``: this
    migration's subscription name; ``replicates``: whether the database has tables to
    replicate (otherwise a finished run is "copied", not "streaming"); ``in_place``: whether
    this kind of copy can continue an interrupted run in a schema it keeps (pgtide's
    snapshot copy can; the subscription's own copy restores the schema afresh).
    """
    decision = _decide(state, facts, ours=ours, resume=resume, drop_existing=drop_existing, replicates=replicates,
                       in_place=in_place)
    if decision.drops and facts.writers:
        # Whatever the record says, a database a subscription writes into is not dropped.
        return _live(facts, ours, dropping=True)
    return decision


def _live(facts: TargetFacts, ours: str, *, dropping: bool) -> TargetDecision:
    foreign = [w for w in facts.writers if w != ours]
    whose = "a live migration" if foreign else "this migration"
    verb = "refusing to drop it" if dropping else "it is a live replica"
    return TargetDecision(TargetAction.REFUSE_LIVE,
                          f"is written to by subscription {', '.join(facts.writers)} ({whose}): {verb}", _LIVE_REMEDY)


def _decide(state: Mapping[str, Any], facts: TargetFacts, *, ours: str, resume: bool, drop_existing: bool,
            replicates: bool, in_place: bool) -> TargetDecision:
    recorded = parse_state(state.get("status")) if resume else None
    foreign = [w for w in facts.writers if w != ours]
    if foreign or (ours in facts.writers and recorded not in CONTINUABLE | {DatabaseState.CUT_OVER}):
        return _live(facts, ours, dropping=drop_existing)
    if parse_state(state.get("status")) is DatabaseState.CUT_OVER and facts.exists:
        # Consulted with or without --resume, and never dropped: the application writes here now.
        return TargetDecision(TargetAction.REFUSE_CUT_OVER, "was cut over: it is the application's database now",
                              "Nothing to do: the migration is finished. To migrate it again, pick another target "
                              "database (pgtide never drops a cut-over one).")
    if recorded is DatabaseState.STREAMING and ours in facts.writers:
        return TargetDecision(TargetAction.ALREADY_DONE, "is already streaming: init leaves it as it is")
    if recorded is DatabaseState.COPIED and not replicates and facts.exists and not facts.writers:
        return TargetDecision(TargetAction.ALREADY_DONE, "holds this migration's finished copy (nothing to "
                                                         "replicate): init leaves it as it is")
    if not facts.exists:
        return TargetDecision(TargetAction.CREATE, "will be created")
    unfinished = recorded in UNFINISHED
    if unfinished and in_place and not state.get("created_database") and state.get("schema") == "done" \
            and not state.get("post_data"):
        return TargetDecision(TargetAction.CONTINUE_IN_PLACE, f"holds an interrupted run of this migration "
                                                              f"({recorded}): init empties its tables and copies again")
    if unfinished and state.get("created_database"):
        return TargetDecision(TargetAction.RECREATE_OURS, f"holds an unfinished run pgtide created ({recorded}): "
                                                          "init creates it again")
    if not facts.objects:
        return TargetDecision(TargetAction.USE_EMPTY, "exists and is empty")
    listed = ", ".join(facts.objects[:5]) + (" and more" if len(facts.objects) > 5 else "")
    if drop_existing:
        return TargetDecision(TargetAction.DROP_AND_RECREATE, f"is not empty ({listed}): it will be dropped and "
                                                              "created again (--drop-existing)")
    return TargetDecision(
        TargetAction.REFUSE_NOT_EMPTY, f"is not empty: it has {listed}",
        "Pass --drop-existing (in the app: tick 'Drop and recreate non-empty target databases') to replace it, "
        "or pick another target.",
    )


def target_facts(target: Endpoint, database: str) -> TargetFacts:
    """Ask the target server about ``database`` (two short queries)."""
    with connect(target.with_dbname("postgres")) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            return TargetFacts(exists=False)
        writers = tuple(row[0] for row in conn.execute(
            "SELECT s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
            "WHERE d.datname = %s ORDER BY 1", [database]))
    with connect(target.with_dbname(database)) as conn:
        objects = tuple(row[0] for row in conn.execute(
            """
            SELECT format('%s %I.%I', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table'
                          WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'relation' END,
                          n.nspname, c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_toast'
            ORDER BY 1 LIMIT 6
            """))
    return TargetFacts(exists=True, objects=objects, writers=writers)
