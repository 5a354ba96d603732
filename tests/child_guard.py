"""Test servers that die with the test run: a kill -9 of pytest must not leave them running."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A ``preexec_fn``: the kernel sends SIGTERM to the child when its parent thread ends
    (Linux only; elsewhere the fixtures' own stop and atexit remain the only guard)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
