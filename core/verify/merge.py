"""Naming the differing keys of a key range: two key-ordered (key, row hash) lists merged.

Pure logic, no database: what :mod:`.compare` uses once bisection stops, and what decides
where it stops.

Bisecting a key range costs one aggregate over it on each side per level; listing it
costs one ordered index scan per side and a merge here. Where most of a range differs,
bisecting finds little to skip and each level reads the range again, so a range is
listed outright when its mismatch is *dense*: one side empty, the row counts apart by a
sizeable fraction, or most of its sub-ranges differing. (data-diff does the same below its
bisection threshold.)

The merge works a window at a time instead of a row at a time: both lists arrive in
chunks in key order; every key up to the smaller of the two sides' last keys read is
complete on both sides, so that prefix is compared with dict and set operations (C
speed), and the rest waits for the next chunk. Equal prefixes, the common case, cost one
list comparison.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal, TypeVar

DifferenceKind = Literal["missing", "extra", "different"]
#: One side's row: (key, row hash). Keys must compare in Python as the server orders them.
Row = tuple[Any, int]
#: A differing key: (key, hash on the source or None, hash on the target or None).
Difference = tuple[Any, int | None, int | None]
K = TypeVar("K")

_first = itemgetter(0)


def kind_of(source_hash: int | None, target_hash: int | None) -> DifferenceKind:
    if target_hash is None:
        return "missing"
    if source_hash is None:
        return "extra"
    return "different"


def _window(source: Sequence[Row], target: Sequence[Row]) -> Iterator[Difference]:
    """The differences between two complete, key-ordered lists of the same key interval."""
    if source == target:
        return
    # Pairs in one side only: a key missing, extra, or with another hash on the other side.
    pairs_source, pairs_target = set(source), set(target)
    on_source = dict(pairs_source.difference(pairs_target))
    on_target = dict(pairs_target.difference(pairs_source))
    for key in sorted(on_source.keys() | on_target.keys()):
        yield key, on_source.get(key), on_target.get(key)


def merge_differences(source: Iterable[Sequence[Row]], target: Iterable[Sequence[Row]]) -> Iterator[Difference]:
    """Every key whose row differs between two streams of chunks, in key order.

    Each stream yields lists of (key, row hash) with strictly increasing keys across the
    whole stream (a primary key in index order). Memory is bounded by a few chunks.
    """
    sources, targets = iter(source), iter(target)
    src: list[Row] = []
    tgt: list[Row] = []
    src_open = tgt_open = True

    def pull(chunks: Iterator[Sequence[Row]], into: list[Row]) -> bool:
        for chunk in chunks:
            if chunk:
                into.extend(chunk)
                return True
        return False

    while True:
        if src_open and not src:
            src_open = pull(sources, src)
        if tgt_open and not tgt:
            tgt_open = pull(targets, tgt)
        if not src_open and not tgt_open:
            yield from _window(src, tgt)
            return
        # An open side holds rows here; keys up to its last one are all read on that side.
        if src_open and tgt_open:
            bound = min(src[-1][0], tgt[-1][0])
        elif src_open:
            bound = src[-1][0]
        else:
            bound = tgt[-1][0]
        cut_src = bisect_right(src, bound, key=_first)
        cut_tgt = bisect_right(tgt, bound, key=_first)
        yield from _window(src[:cut_src], tgt[:cut_tgt])
        del src[:cut_src]
        del tgt[:cut_tgt]


# -- where bisection stops -----------------------------------------------------------------------


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
    """An inclusive key range to list. ``one_sided``: per the last aggregates, only one side has rows."""

    first: int
    last: int
    source_rows: int
    target_rows: int
    dense: bool = False

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
                           prev.target_rows + span.target_rows, prev.dense or span.dense)
        else:
            out.append(span)
    return out


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
