"""The pure parts of settling key ranges by their keys: binary int8 arrays both ways, spans' sums."""

from __future__ import annotations

import struct

from pgtide.core.verify.connections import _int8s, _pack_int8s
from pgtide.core.verify.merge import Span, coalesce


def test_int8_arrays_both_ways() -> None:
    values = [0, 1, -1, 255, 256, -(1 << 63), (1 << 63) - 1, 123_456_789_012, -42]
    packed = bytes(_pack_int8s(values))
    # PostgreSQL's array_send layout: ndim 1, no NULLs, int8 (oid 20), length, lower bound 1,
    # then each element as a 4-byte length (8) and 8 bytes big-endian.
    assert struct.unpack_from(">iiiii", packed) == (1, 0, 20, len(values), 1)
    assert [struct.unpack_from(">iq", packed, 20 + 12 * i) for i in range(len(values))] == [(8, v) for v in values]
    assert bytes(_pack_int8s([])) == struct.pack(">iii", 0, 0, 20)  # what array_send gives for '{}'
    # Keys come back as string_agg(int8send(key)): 8 bytes big-endian each, end to end.
    assert list(_int8s(struct.pack(f">{len(values)}q", *values))) == values
    assert list(_int8s(b"")) == []


def test_spans_settle_by_keys_only_when_both_sides_hold_rows_and_counts_differ() -> None:
    assert Span(1, 10, 10, 9, source_sum=5, target_sum=3).settles_by_keys
    assert not Span(1, 10, 10, 10, source_sum=5, target_sum=3).settles_by_keys  # a row differs: compare rows
    assert not Span(1, 10, 10, 0, source_sum=5, target_sum=0).settles_by_keys  # one-sided: counted there
    assert not Span(1, 10, 10, 9).settles_by_keys  # sums unknown


def test_coalesced_spans_add_their_sums_unless_one_is_unknown() -> None:
    joined = coalesce([Span(11, 20, 10, 9, source_sum=7, target_sum=2), Span(1, 10, 10, 8, source_sum=-3,
                                                                           target_sum=4)])
    assert joined == [Span(1, 20, 20, 17, source_sum=4, target_sum=6)]
    assert coalesce([Span(1, 10, 10, 9, source_sum=1, target_sum=1), Span(11, 20, 10, 9)])[0].source_sum is None
