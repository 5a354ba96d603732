"""The target policy, table-driven: every recorded state against every kind of target database."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pgtide.core.engine.target import TargetAction, TargetFacts, decide_target
from pgtide.core.jobs.state import TRANSITIONS, DatabaseState, InvalidTransition, check_transition

OURS = "pgtide_ours"

STATES: list[dict[str, Any]] = [
    {},
    {"status": "copying", "created_database": True},
    {"status": "copying", "created_database": False, "schema": "done"},
    {"status": "copying", "created_database": False, "schema": "done", "post_data": "started"},
    {"status": "failed", "created_database": True},
    {"status": "failed", "created_database": False, "schema": "done"},
    {"status": "copied"},
    {"status": "streaming"},
    {"status": "torn_down"},
    {"status": "cut_over"},
    {"status": "something a newer version wrote"},
]
FACTS = [
    TargetFacts(exists=False),
    TargetFacts(exists=True),
    TargetFacts(exists=True, objects=("table public.t",)),
    TargetFacts(exists=True, objects=("table public.t",), writers=(OURS,)),
    TargetFacts(exists=True, objects=("table public.t",), writers=("someone_else",)),
    TargetFacts(exists=True, objects=("table public.t",), writers=(OURS, "someone_else")),
]


@pytest.mark.parametrize(("state", "facts", "resume", "drop", "replicates", "in_place"),
                         list(itertools.product(STATES, FACTS, [True, False], [True, False], [True, False],
                                                [True, False])))
def test_every_combination_keeps_the_safety_rules(state: dict[str, Any], facts: TargetFacts, resume: bool,
                                                  drop: bool, replicates: bool, in_place: bool) -> None:
    decision = decide_target(state, facts, ours=OURS, resume=resume, drop_existing=drop, replicates=replicates,
                             in_place=in_place)
    # A database another subscription writes to is never dropped, nor is dropping it advised.
    if set(facts.writers) - {OURS}:
        assert decision.action is TargetAction.REFUSE_LIVE
        assert "Pass --drop-existing" not in decision.remedy and "teardown" in decision.remedy
    # Nothing is ever dropped while any subscription writes into it.
    if facts.writers:
        assert not decision.drops
    # User data is only replaced when the user asked for it or pgtide made the database.
    if decision.action is TargetAction.DROP_AND_RECREATE:
        assert drop and facts.objects
    if decision.action is TargetAction.RECREATE_OURS:
        assert resume and state.get("created_database")
    # A cut-over target is the application's database: never dropped, never copied into,
    # whatever --resume or --drop-existing say.
    if state.get("status") == "cut_over" and facts.exists and not facts.writers:
        assert decision.action is TargetAction.REFUSE_CUT_OVER and not decision.drops
        assert "--drop-existing" not in decision.remedy
    # A refusal always says what to do.
    if decision.refused:
        assert decision.remedy
    # Without --resume the record is not consulted.
    if not resume:
        assert decision.action not in (TargetAction.ALREADY_DONE, TargetAction.CONTINUE_IN_PLACE,
                                       TargetAction.RECREATE_OURS)


def test_the_cases_users_hit() -> None:
    streaming = {"status": "streaming"}
    live = TargetFacts(exists=True, objects=("table public.t",), writers=(OURS,))
    assert decide_target(streaming, live, ours=OURS, resume=True, drop_existing=False,
                         replicates=True).action is TargetAction.ALREADY_DONE
    # The case: every table schema-only, a rerun: validate said ok, init refused.
    copied = decide_target({"status": "copied"}, TargetFacts(exists=True, objects=("table public.t",)),
                           ours=OURS, resume=True, drop_existing=False, replicates=False)
    assert copied.action is TargetAction.ALREADY_DONE and not copied.refused
    # --no-resume on a live migration of ours: refused, never "pass --drop-existing".
    refused = decide_target(streaming, live, ours=OURS, resume=False, drop_existing=False, replicates=True)
    assert refused.action is TargetAction.REFUSE_LIVE and "Pass --drop-existing" not in refused.remedy
    plain = decide_target({}, TargetFacts(exists=True, objects=("table public.t",)), ours=OURS, resume=True,
                          drop_existing=False, replicates=True)
    assert plain.action is TargetAction.REFUSE_NOT_EMPTY and "--drop-existing" in plain.remedy


def test_state_transitions_are_checked() -> None:
    check_transition("db", None, DatabaseState.COPYING)
    check_transition("db", DatabaseState.COPYING, DatabaseState.STREAMING)
    with pytest.raises(InvalidTransition):
        check_transition("db", None, DatabaseState.STREAMING)  # streaming without ever copying
    with pytest.raises(InvalidTransition):
        check_transition("db", DatabaseState.TORN_DOWN, DatabaseState.STREAMING)
    assert all(DatabaseState.TORN_DOWN in allowed for allowed in TRANSITIONS.values())
