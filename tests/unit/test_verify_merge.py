"""The pure merge behind verify's key listing: windows of two key-ordered streams, density rules, tallies."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import pytest

from pgtide.core.infra.errors import Interrupted
from pgtide.core.infra.events import Cancelled, Event
from pgtide.core.verify.compare import (
    ChunkVerified,
    RangesListed,
    Rechecking,
    TableStarted,
    VerifyCancelled,
)
from pgtide.core.verify.merge import (
    Row,
    Span,
    Tally,
    coalesce,
    counts_dense,
    kind_of,
    merge_differences,
    mostly_differing,
)


def chunked(rows: Sequence[Row], rng: random.Random) -> Iterator[list[Row]]:
    """Random chunk sizes, empty chunks included: the merge must not depend on how rows arrive."""
    at = 0
    while at < len(rows):
        size = rng.choice([0, 1, 2, 5, 50, 500])
        yield list(rows[at:at + size])
        at += size
    if rng.random() < 0.5:
        yield []


def brute_force(source: dict[int, int], target: dict[int, int]) -> list[tuple[int, int | None, int | None]]:
    keys = sorted(set(source) | set(target))
    return [(k, source.get(k), target.get(k)) for k in keys if source.get(k) != target.get(k)]


@pytest.mark.parametrize("seed", range(40))
def test_merge_matches_a_brute_force_comparison(seed: int) -> None:
    rng = random.Random(seed)
    keys = rng.sample(range(-500, 3000), rng.randint(0, 800))
    source = {k: rng.randint(0, 3) for k in keys if rng.random() < 0.9}
    target = {k: (h if rng.random() < 0.8 else rng.randint(0, 3)) for k, h in source.items() if rng.random() < 0.85}
    target.update({k: 1 for k in keys if k not in source and rng.random() < 0.5})
    found = list(merge_differences(chunked(sorted(source.items()), rng), chunked(sorted(target.items()), rng)))
    assert found == brute_force(source, target)


def test_merge_edge_cases() -> None:
    rows = [(1, 10), (2, 20), (3, 30)]
    assert list(merge_differences([rows], [rows])) == []
    assert list(merge_differences([rows], [])) == [(1, 10, None), (2, 20, None), (3, 30, None)]
    assert list(merge_differences([], [[], rows[:1], []])) == [(1, None, 10)]
    assert list(merge_differences([[]], [[]])) == []
    # One side's keys all below the other's: the windows still line up.
    assert list(merge_differences([[(1, 1)], [(2, 2)]], [[(5, 5)], [(6, 6)]])) == [
        (1, 1, None), (2, 2, None), (5, None, 5), (6, None, 6)]
    assert list(merge_differences([[(1, 1), (9, 9)]], [[(1, 2)], [(9, 9)]])) == [(1, 1, 2)]


def test_density_rules() -> None:
    assert counts_dense(1000, 0, 0.05) and counts_dense(0, 7, 0.05)  # one side empty
    assert counts_dense(1000, 900, 0.05) and not counts_dense(1000, 990, 0.05)
    assert not counts_dense(1000, 1000, 0.05) and not counts_dense(0, 0, 0.05)
    assert mostly_differing(9, 16, 0.5) and not mostly_differing(8, 16, 0.5)
    assert not mostly_differing(0, 0, 0.5)


def test_coalesce_joins_adjacent_spans_of_the_same_kind_only() -> None:
    spans = [
        Span(21, 30, 10, 10), Span(1, 10, 10, 0, dense=True), Span(11, 20, 10, 0), Span(31, 40, 10, 9),
        Span(50, 60, 0, 11),
    ]
    assert coalesce(spans) == [
        Span(1, 20, 20, 0, dense=True),  # both missing on the target: one range
        Span(21, 40, 20, 19),  # both on both sides
        Span(50, 60, 0, 11),  # not adjacent
    ]
    assert [s.one_sided for s in coalesce(spans)] == ["missing", None, "extra"]


def test_tally_keeps_the_first_keys_and_counts_the_rest_exactly() -> None:
    tally = Tally(limit=2)
    tally.add(("1",), 5, None)
    tally.add(("2",), 5, 5)  # equal: not a difference
    tally.add(("3",), None, 7)
    tally.add(("4",), 1, 2)
    tally.add(("5",), 1, None)
    tally.count("missing", 10)
    assert tally.tracked == {("1",): (5, None), ("3",): (None, 7)}
    assert tally.overflow == {"missing": 11, "extra": 0, "different": 1}
    assert tally.total() == 14 and tally.room == 0
    assert [kind_of(1, None), kind_of(None, 1), kind_of(1, 2)] == ["missing", "extra", "different"]


def test_verify_events_and_cancel_are_cores() -> None:
    started = TableStarted("db", "public", "t", 1, 2)
    assert isinstance(started, Event) and started.to_dict()["event"] == "TableStarted"
    assert all(issubclass(cls, Event) for cls in (ChunkVerified, Rechecking, RangesListed))
    assert RangesListed("db", "public", "t", 3, 2, 100).to_dict()["differences"] == 100
    error = VerifyCancelled()
    assert isinstance(error, Cancelled) and isinstance(error, Interrupted) and error.exit_code == 4
