"""The writes of one claimed run: one at a time, in order, carrying unwritten results.

A step's success is not written by a transaction of its own: it is handed to `defer`
and carried by the run's next write (`gateway.executor.progress`), usually the start
of the step after it, so a chain of steps costs one transaction per step. The runner
keeps nothing unwritten for long: `starting` names the steps about to make their first
write (which will carry it); when none is, the driver calls `flush` before it waits,
and concluding the run (finish, release) carries whatever is left.

Writes of a run go one at a time and commit in the order they were asked for, so a
step's start never commits before the results of the steps it needs. A crash before a
result is written re-runs that step with the same idempotency key, as a crash just
after its call always did.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio

from gateway.executor import progress
from gateway.executor.store import Claim, RunStore, StepFinish


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Database work off the event loop."""
    return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))


class RunWriter:
    def __init__(self, store: RunStore, claim: Claim) -> None:
        self.store = store
        self.claim = claim
        # Steps started whose first write has not been made yet: it will carry the
        # unwritten results, so nobody needs to flush them meanwhile.
        self.starting: set[str] = set()
        # Uncontended (the usual case): no extra trip through the event loop.
        self._lock = anyio.Lock(fast_acquire=True)
        self._unwritten: list[StepFinish] = []

    async def write(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """``function(store, claim, *args, finishes=…)`` from `progress`, carrying every
        result not yet written."""
        async with self._lock:
            return await self._write(function, *args, **kwargs)

    async def _write(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        finishes, self._unwritten = self._unwritten, []
        try:
            # On the event loop when that cannot wait for anyone (SQLite), else a thread.
            done, result = self.store.inline(
                function, self.store, self.claim, *args, finishes=finishes, **kwargs
            )
            if done:
                return result
            return await in_thread(
                self.store.timed,
                function,
                self.store,
                self.claim,
                *args,
                finishes=finishes,
                **kwargs,
            )
        except BaseException:
            # Not written, or not known to be: the next write carries them again
            # (rewriting a result is harmless). After LeaseLost nothing is written.
            self._unwritten[:0] = finishes
            raise

    async def started(self, step_id: str) -> None:
        """``step_id`` made its first write. What arrived while it was writing, it did
        not carry: write that now, unless another starting step will."""
        self.starting.discard(step_id)
        if not self.starting and self._unwritten:
            await self.flush()

    def defer(self, finish: StepFinish) -> None:
        self._unwritten.append(finish)

    async def flush(self) -> None:
        """Writes the unwritten results now, unless a write already carried them."""
        async with self._lock:
            if self._unwritten:
                await self._write(progress.record)
