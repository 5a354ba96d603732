"""Shared bits for the benchmark scripts: a throwaway cluster and a timer."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for pgharness

from pgharness import LOGICAL_SETTINGS, PgCluster, machine_bindir, running_cluster

T = TypeVar("T")

__all__ = ["LOGICAL_SETTINGS", "PgCluster", "machine_bindir", "median_time", "running_cluster"]


def median_time(action: Callable[[], T], *, repeat: int = 3) -> tuple[float, T]:
    """Median wall time of ``repeat`` runs, and the last run's result."""
    times: list[float] = []
    result: T
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
