"""A migration plan: plain data that both front ends build and the runner executes.

The TUI wizard fills it step by step, the CLI from flags and ``--config``; a profile is a
plan saved as TOML without its secrets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ..infra.endpoint import Endpoint
from ..infra.errors import InputError
from .selection import Selection

CopyMode = Literal["snapshot", "server"]


@dataclass(frozen=True)
class Options:
    """How to run, as opposed to what to move."""

    #: Parallel copy / index workers per database.
    jobs: int = 4
    #: Drop and recreate a non-empty target database instead of refusing.
    drop_existing: bool = False
    #: "snapshot": pgtide copies under the slot's exported snapshot; "server": the
    #: subscription's own initial copy (copy_data = true).
    copy_mode: CopyMode = "snapshot"
    #: Continue an interrupted run from the job store.
    resume: bool = True
    #: Copy roles (without passwords or superuser attributes) before the schema.
    copy_roles: bool = True
    #: Put the source password into the subscription's connection string. PostgreSQL keeps
    #: that string in pg_subscription on the target; False relies on a .pgpass entry for
    #: the source on the *target server* instead.
    subscription_password: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.jobs <= 64:
            raise InputError(f"jobs must be between 1 and 64, not {self.jobs}", "Pass --jobs N with 1 <= N <= 64.")
        if self.copy_mode not in ("snapshot", "server"):
            raise InputError(f"unknown copy mode {self.copy_mode!r}", "Use --copy snapshot or --copy server.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "options") -> Options:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(
                f"{source}: unknown option(s) {', '.join(unknown)}",
                f"Known options: {', '.join(known)}.",
            )
        defaults = cls()
        for key, value in data.items():
            expected = type(getattr(defaults, key))
            if type(value) is not expected:
                raise InputError(
                    f"{source}: option {key} must be {expected.__name__}, not {type(value).__name__}",
                    f"Write e.g. {key} = {getattr(defaults, key)!r}.".replace("True", "true").replace("False", "false"),
                )
        return cls(**data)


@dataclass(frozen=True)
class Plan:
    source: Endpoint
    target: Endpoint
    selection: Selection = field(default_factory=Selection)
    options: Options = field(default_factory=Options)

    def with_options(self, **changes: Any) -> Plan:
        return replace(self, options=replace(self.options, **changes))
