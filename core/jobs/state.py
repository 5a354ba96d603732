"""The recorded state of one database of a migration, and the moves allowed between states.

Every module that records progress writes one of these (never a hand-written string), and
``check_transition`` is the only place that says which move is legal: a record that claims
"streaming" was really streaming once.
"""

from __future__ import annotations

from enum import Enum

from ..infra.errors import PgtideError


class DatabaseState(str, Enum):
    """Where one database of a migration stands, as the job record keeps it."""

    #: A copy under an exported snapshot (or the subscription's own copy) is under way.
    COPYING = "copying"
    #: Rows and schema are on the target; nothing replicates into it (schema-only or
    #: unlogged tables only), or the server-side copy has not been confirmed yet.
    COPIED = "copied"
    #: The subscription applies every change since the snapshot.
    STREAMING = "streaming"
    #: The last run failed; what it created on the servers was removed.
    FAILED = "failed"
    #: The cutover switched the application's writes to the target: it is the primary now
    #: (a reverse subscription may still carry its changes back to the source).
    CUT_OVER = "cut_over"
    #: pgtide's replication objects were removed; the target keeps the user's data.
    TORN_DOWN = "torn_down"

    def __str__(self) -> str:
        return self.value


#: Every legal move (None: nothing recorded yet). Teardown may end any state; a new copy may
#: start from any state but a live one, which must be torn down first (the target policy
#: refuses before anything is touched).
TRANSITIONS: dict[DatabaseState | None, frozenset[DatabaseState]] = {
    None: frozenset({DatabaseState.COPYING, DatabaseState.TORN_DOWN}),
    DatabaseState.COPYING: frozenset({DatabaseState.COPYING, DatabaseState.COPIED, DatabaseState.STREAMING,
                                      DatabaseState.FAILED, DatabaseState.TORN_DOWN}),
    DatabaseState.COPIED: frozenset({DatabaseState.COPYING, DatabaseState.STREAMING, DatabaseState.FAILED,
                                     DatabaseState.TORN_DOWN}),
    DatabaseState.STREAMING: frozenset({DatabaseState.STREAMING, DatabaseState.TORN_DOWN, DatabaseState.COPYING,
                                        DatabaseState.CUT_OVER}),
    # A cut-over target is the application's database: nothing copies into it again.
    DatabaseState.CUT_OVER: frozenset({DatabaseState.CUT_OVER, DatabaseState.TORN_DOWN}),
    DatabaseState.FAILED: frozenset({DatabaseState.COPYING, DatabaseState.FAILED, DatabaseState.TORN_DOWN}),
    DatabaseState.TORN_DOWN: frozenset({DatabaseState.COPYING, DatabaseState.TORN_DOWN}),
}

#: States in which the target holds a run of this migration that init may continue.
CONTINUABLE = frozenset({DatabaseState.COPYING, DatabaseState.COPIED, DatabaseState.FAILED, DatabaseState.STREAMING})
#: States of a run that did not finish.
UNFINISHED = frozenset({DatabaseState.COPYING, DatabaseState.FAILED})


class InvalidTransition(PgtideError):
    """A bug: pgtide tried to record a move its own rules forbid."""

    exit_code = 1
    default_title = "Internal error"


def parse_state(value: object) -> DatabaseState | None:
    """A recorded value as a state; None for nothing recorded or a value this version does not know."""
    try:
        return DatabaseState(value) if value is not None else None
    except ValueError:
        return None


def check_transition(database: str, current: DatabaseState | None, new: DatabaseState) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(
            f"{database}: cannot go from {current or 'nothing recorded'} to {new}",
            "This is a bug in pgtide; the log has the details. Run `pgtide status` to see the real state.",
        )
