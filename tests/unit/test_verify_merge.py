"""The pure merge behind verify's key listing: windows of two key-ordered streams, density rules, tallies."""

from __future__ import annotations

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
    Span,
    Tally,
    coalesce,
    counts_dense,
    kind_of,
    mostly_differing,
)


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
