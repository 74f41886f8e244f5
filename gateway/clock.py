"""The clock that code deciding something from elapsed time reads.

Some decisions here are made from how long something took or how long ago it
happened, on this process's own monotonic clock: whether a write may stay on the
event loop (a running average of recent commit or evaluation times against a
budget), whether appends come close enough together to be a burst, whether a
checkpoint is due after ``every_seconds``. Such code takes a `Clock` at construction,
`monotonic` in production, so that what it decides can be checked by moving time by
hand rather than by waiting for it, or by hoping a busy machine is fast enough.

Not for lease, expiry or timer arithmetic shared between processes: that is on the
database clock (docs/architecture.md §8: every process must agree on it), and a test
moves it by writing times that are already in the past. Not for the wall-clock time
written into records either (`gateway.timestamps`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds on a monotonic scale: only the difference between two readings means
anything."""


def monotonic() -> float:
    """The process's high-resolution monotonic clock (`time.perf_counter`: fine enough
    for millisecond budgets on every platform)."""
    return time.perf_counter()


def thread_cpu() -> float:
    """The CPU time the calling thread has used: how long an evaluation actually ran,
    as opposed to how long it waited for a core on a busy machine."""
    return time.thread_time()
