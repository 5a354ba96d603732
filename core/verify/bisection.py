"""Splitting differing key ranges until listing them is cheaper than splitting them again."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

from .buckets import _NO_ROWS, _TableBase
from .connections import _in_snapshot
from .merge import (
    Span,
    counts_dense,
    mostly_differing,
)


class _Bisecting(_TableBase):
    def bisect(self, ranges: list[Span]) -> list[Span]:
        """Split differing key ranges until listing them is cheaper than splitting them again.

        A range is listed as it is once it holds few rows, or when its mismatch is dense
        (:func:`counts_dense`, :func:`mostly_differing`): then most of its rows differ, and
        every further level would read it again to skip little. Otherwise only its differing
        sub-ranges go on, with their counts.
        """
        options = self.options
        pending = ranges
        leaves: list[Span] = []
        while pending:
            split: list[tuple[int, int, int, int]] = []
            parents: list[Span] = []
            for span in pending:
                rows = max(span.source_rows, span.target_rows)
                if rows <= options.leaf_rows or span.last - span.first + 1 <= options.leaf_rows:
                    leaves.append(span)
                elif counts_dense(span.source_rows, span.target_rows, options.dense_fraction):
                    leaves.append(replace(span, dense=True))
                else:
                    width = max(1, math.ceil((span.last - span.first + 1) / options.fanout))
                    split.append((len(split), span.first, span.last, width))
                    parents.append(span)
            pending = []
            if not split:
                break
            self._rechecking(len(split), 0, f"bisecting {len(split)} differing key range(s)")
            sub_source = _in_snapshot(self.pair.source, functools.partial(self._collect_ranges, "source", split))
            self.waiter.wait(self.waiter.source_position())
            sub_target = self._collect_ranges("target", split)
            children: dict[int, list[Span]] = {}
            nonempty: dict[int, int] = {}
            for key in sorted(set(sub_source) | set(sub_target)):
                rid, sub = key
                nonempty[rid] = nonempty.get(rid, 0) + 1
                if sub_source.get(key) != sub_target.get(key):
                    _, first, last, width = split[rid]
                    sub_first = first + sub * width
                    (source_rows, source_sum), (target_rows, target_sum) = (
                        sub_source.get(key, _NO_ROWS), sub_target.get(key, _NO_ROWS))
                    children.setdefault(rid, []).append(Span(
                        sub_first, min(last, sub_first + width - 1), source_rows, target_rows,
                        source_sum=source_sum, target_sum=target_sum))
            for rid, parent in enumerate(parents):
                differing = children.get(rid, [])
                if mostly_differing(len(differing), nonempty.get(rid, 0), options.dense_subranges):
                    # The parent's counts and sums are the children's: the sub-aggregates are newer.
                    subs = range(options.fanout + 1)
                    leaves.append(Span(parent.first, parent.last,
                                       sum(sub_source.get((rid, s), _NO_ROWS)[0] for s in subs),
                                       sum(sub_target.get((rid, s), _NO_ROWS)[0] for s in subs),
                                       dense=True,
                                       source_sum=sum(sub_source.get((rid, s), _NO_ROWS)[1] for s in subs),
                                       target_sum=sum(sub_target.get((rid, s), _NO_ROWS)[1] for s in subs)))
                else:
                    pending.extend(differing)
        return leaves
