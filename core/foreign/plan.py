"""A migration from a foreign source: what to move, how, and where to.

Table names are the source's own (no schema level: SQLite, a MySQL database and a MongoDB
database each hold one flat namespace); they land in ``target_schema`` of the target
database under the same names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ..infra.endpoint import Endpoint
from ..infra.errors import InputError
from ..replication.identity import digest
from .endpoint import ForeignEndpoint
from .source import SourceTable

Layout = Literal["typed", "jsonb"]
LAYOUTS: tuple[Layout, ...] = ("typed", "jsonb")


def parse_interval(text: str | float | int) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"`` or ``"1h"``; InputError for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds?|m|min|minutes?|h|hours?)?\s*", str(text or ""))
    if not match:
        raise InputError(f"{text!r} is not an interval", "Write e.g. 30s, 5m or 1h.", title="Bad interval")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[(match.group(2) or "s")[0]]


def default_layout(endpoint: ForeignEndpoint) -> Layout:
    return "jsonb" if endpoint.kind == "mongodb" else "typed"


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ForeignPlan:
    source: ForeignEndpoint
    target: Endpoint
    layout: Layout = "typed"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    schema_only: tuple[str, ...] = ()
    #: table → row filter in the source's own language (SQL for SQLite/MySQL, a JSON query for MongoDB).
    filters: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    #: "table.column" → PostgreSQL type (typed layout), checked by the target server.
    casts: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    target_schema: str = "public"
    jobs: int = 4
    drop_existing: bool = False
    resume: bool = True
    #: Seconds between re-reads for sources without a change log (and when asked for).
    refresh_every: float | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"unknown layout {self.layout!r}", "Use --layout typed or --layout jsonb.")
        if self.layout == "typed" and self.source.kind == "mongodb":
            raise InputError("MongoDB collections have no columns to type",
                             "Use --layout jsonb (the default for MongoDB).", title="Layout not available")
        if not 1 <= self.jobs <= 64:
            raise InputError(f"jobs must be between 1 and 64, not {self.jobs}", "Pass --jobs N with 1 <= N <= 64.")
        if self.refresh_every is not None and self.refresh_every < 1:
            raise InputError("--refresh-every must be at least 1 second", "Pass e.g. --refresh-every 30s.")
        object.__setattr__(self, "filters", _frozen(self.filters))
        object.__setattr__(self, "casts", _frozen(self.casts))

    @property
    def migration_id(self) -> str:
        """Stable across spellings of the same source and target (the endpoints' identities)."""
        return "f" + digest(self.source.identity, self.target.identity, self.target.dbname, length=11)

    @property
    def database(self) -> str:
        """The target database: the record's one entry for this migration."""
        return self.target.dbname

    def picks(self, table: SourceTable | str) -> bool:
        name = table if isinstance(table, str) else table.name
        if self.include and name not in self.include:
            return False
        return name not in self.exclude

    def mode(self, name: str) -> Literal["full", "schema_only", "filtered"]:
        if name in self.schema_only:
            return "schema_only"
        return "filtered" if name in self.filters else "full"

    def check_names(self, tables: list[SourceTable]) -> None:
        """Every table the selection names exists (a typo must not silently move nothing)."""
        known = {t.name for t in tables}
        named = set(self.include) | set(self.exclude) | set(self.schema_only) | set(self.filters)
        named |= {key.rpartition(".")[0] for key in self.casts}
        missing = sorted(named - known)
        if missing:
            raise InputError(f"no table {', '.join(repr(m) for m in missing)} on the source",
                             f"The source has: {', '.join(sorted(known)[:20]) or 'no tables'}"
                             f"{' …' if len(known) > 20 else ''}. Names are case-sensitive.",
                             title="Unknown table")
        for key in self.casts:
            table, _, column = key.rpartition(".")
            found = next(t for t in tables if t.name == table)
            if column not in found.column_names:
                raise InputError(f"cast for {key}: {table} has no column {column!r}",
                                 f"Its columns: {', '.join(found.column_names)}.", title="Unknown column")

    def to_dict(self) -> dict[str, Any]:
        """The plan as the record keeps it: no password anywhere."""
        return {"kind": "foreign", "source": self.source.to_url(), "target": self.target.to_url(),
                "layout": self.layout, "include": list(self.include), "exclude": list(self.exclude),
                "schema_only": list(self.schema_only), "filters": dict(self.filters), "casts": dict(self.casts),
                "target_schema": self.target_schema, "jobs": self.jobs, "refresh_every": self.refresh_every}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ForeignPlan:
        from ..infra.secrets import with_stored_password

        return cls(source=ForeignEndpoint.parse(str(data["source"])),
                   target=with_stored_password(Endpoint.parse(str(data["target"]))),
                   layout=data.get("layout", "typed"), include=tuple(data.get("include", ())),
                   exclude=tuple(data.get("exclude", ())), schema_only=tuple(data.get("schema_only", ())),
                   filters=dict(data.get("filters", {})), casts=dict(data.get("casts", {})),
                   target_schema=str(data.get("target_schema", "public")), jobs=int(data.get("jobs", 4)),
                   refresh_every=data.get("refresh_every"))
