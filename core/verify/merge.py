"""Where bisecting a key range stops, and the tallies of what differs: pure logic, no database.

Bisecting a key range costs one aggregate over it on each side per level. Where most of a
range differs, bisecting finds little to skip and each level reads the range again, so
:mod:`.bisection` lists a range outright when its mismatch is *dense*: one side empty, the
row counts apart by a sizeable fraction, or most of its sub-ranges differing (data-diff
does the same below its bisection threshold). The listing itself is settled by keys or
compared on the target's server (see :mod:`.listing`); this module keeps the exact counts
and the first keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

DifferenceKind = Literal["missing", "extra", "different"]


def kind_of(source_hash: int | None, target_hash: int | None) -> DifferenceKind:
    if target_hash is None:
        return "missing"
    if source_hash is None:
        return "extra"
    return "different"


def counts_dense(source_rows: int, target_rows: int, fraction: float) -> bool:
    """At least ``fraction`` of the range's rows differ, by the counts alone (or one side is empty)."""
    rows = max(source_rows, target_rows)
    if rows == 0:
        return False
    if min(source_rows, target_rows) == 0:
        return True
    return abs(source_rows - target_rows) >= fraction * rows


def mostly_differing(differing: int, nonempty: int, fraction: float) -> bool:
    """More than ``fraction`` of the sub-ranges holding rows differ: bisecting further saves little."""
    return nonempty > 0 and differing > fraction * nonempty


@dataclass(frozen=True)
class Span:
    """An inclusive key range to list. ``one_sided``: per the last aggregates, only one side has rows.

    ``source_sum`` / ``target_sum``: the sums of row hashes those aggregates gave (None: unknown).
    With them a range whose counts differ can be settled from its keys alone (see :mod:`.listing`).
    """

    first: int
    last: int
    source_rows: int
    target_rows: int
    dense: bool = False
    source_sum: int | None = None
    target_sum: int | None = None

    @property
    def settles_by_keys(self) -> bool:
        """Both sides hold rows, their counts differ and the sums are known: worth settling by keys."""
        return (self.source_rows > 0 and self.target_rows > 0 and self.source_rows != self.target_rows
                and self.source_sum is not None and self.target_sum is not None)

    @property
    def one_sided(self) -> DifferenceKind | None:
        if self.target_rows == 0 and self.source_rows > 0:
            return "missing"
        if self.source_rows == 0 and self.target_rows > 0:
            return "extra"
        return None


def coalesce(spans: Iterable[Span]) -> list[Span]:
    """Sorted spans, adjacent ones of the same kind joined: fewer, longer index scans."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: s.first):
        if out and out[-1].last + 1 == span.first and out[-1].one_sided == span.one_sided:
            prev = out[-1]
            out[-1] = Span(prev.first, span.last, prev.source_rows + span.source_rows,
                           prev.target_rows + span.target_rows, prev.dense or span.dense,
                           _add(prev.source_sum, span.source_sum), _add(prev.target_sum, span.target_sum))
        else:
            out.append(span)
    return out


def _add(left: int | None, right: int | None) -> int | None:
    return None if left is None or right is None else left + right


@dataclass
class Tally:
    """Differences counted by kind; the first ``limit`` kept with their hashes (for re-checks and the report)."""

    limit: int
    tracked: dict[Any, tuple[int | None, int | None]] = field(default_factory=dict)
    overflow: dict[DifferenceKind, int] = field(default_factory=lambda: {"missing": 0, "extra": 0, "different": 0})

    @property
    def room(self) -> int:
        return max(0, self.limit - len(self.tracked))

    def add(self, key: Any, source_hash: int | None, target_hash: int | None) -> None:
        if source_hash == target_hash:
            return
        if len(self.tracked) < self.limit:
            self.tracked[key] = (source_hash, target_hash)
        else:
            self.overflow[kind_of(source_hash, target_hash)] += 1

    def count(self, kind: DifferenceKind, rows: int) -> None:
        """Differences known by count only (rows of a range the other side has none of)."""
        self.overflow[kind] += rows

    def total(self) -> int:
        return len(self.tracked) + sum(self.overflow.values())
