"""When work may run inline, on the event loop's thread: while recent runs were fast.

Some work costs less done on the calling event loop than handed to a thread: an audit
append to an idle SQLite log (docs/decisions/0012) and a run's progress write
(docs/decisions/0011) are a fraction of a millisecond of SQLite work, against two
thread hops around it. But inline work that turns slow (a slow disk, contention)
stalls every other task on that loop. So such work is done inline only while the
recent runs of it, inline or not, took less than a budget on average: a running
average in which the newest run weighs `RECENT_WEIGHT`. One slow run moves work to
threads; fast runs there bring the average down and work comes back.

One rule, one home (architecture.md §3): the audit sequencer and the run store each
keep an `InlineBudget`. The clock is injected, so a test decides how long a run took
instead of hoping a busy machine is fast enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gateway.clock import Clock, monotonic

T = TypeVar("T")

# Inline while recent runs took less than this on average.
INLINE_BUDGET_S = 0.002
# The newest run's weight in the running average.
RECENT_WEIGHT = 0.2


class InlineBudget:
    """Whether work may run inline now, from how long the recent runs took.

    Shared by threads without a lock: a lost update (two runs recorded at once) only
    delays the average a little, and the decision is a heuristic, never a guarantee.
    """

    def __init__(self, budget_s: float = INLINE_BUDGET_S, *, clock: Clock = monotonic):
        self._budget_s = budget_s
        self._clock = clock
        self._recent_s = 0.0

    def allows(self) -> bool:
        """Whether the recent runs took less than the budget on average."""
        return self._recent_s < self._budget_s

    def record(self, elapsed_s: float) -> None:
        """Counts a run that took ``elapsed_s``, inline or not."""
        self._recent_s += RECENT_WEIGHT * (elapsed_s - self._recent_s)

    def timed(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, counted by how long it took on the clock
        (also when it raises: a failure that took long was slow all the same)."""
        started = self._clock()
        try:
            return function(*args, **kwargs)
        finally:
            self.record(self._clock() - started)
