"""Worker loops: claim a runnable run, execute it, repeat.

A worker holds at most one run at a time; ``executor.workers`` loops run in each
process (``gateway serve`` and ``gateway worker`` alike), and any number of processes
share one database. An idle worker sleeps until there may be something to do
(docs/decisions/0042):

- a run submitted in its own process (`Doorbell`);
- the database changed through another connection (`ChangeFeed`, one per process:
  SQLite's data version looked at every ``poll_s``, PostgreSQL's announcements);
- the database's next timer (`RunStore.next_due_in`: a waiting run's wake-up, a
  lease running out, a schedule due);
- at the latest ``idle_poll_s`` after its last look (an announcement lost).

A timer found due but not yet claimable (another worker's run at that moment) is
looked at again after ``poll_s``; on SQLite the feed wakes it at most that often.
At most every ``poll_s`` it also fires due schedules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from gateway.executor.deps import ExecutorDeps
from gateway.executor.runner import RunExecution
from gateway.executor.store import Claim
from gateway.store.changes import ChangeFeed

log = logging.getLogger(__name__)

# Work an idle worker does between claims (firing due schedules); returns how much.
Tick = Callable[[], Awaitable[int]]


def worker_name(index: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{secrets.token_hex(3)}"


class Worker:
    def __init__(self, deps: ExecutorDeps, name: str, tick: Tick | None = None) -> None:
        self.deps = deps
        self.name = name
        self.tick = tick
        self.runs_done = 0
        self._next_tick = 0.0
        self.idle_for = deps.config.poll_s  # how long the last idle look said to sleep

    async def run_forever(self) -> None:
        config = self.deps.config
        while True:
            bell = self.deps.doorbell.current()
            try:
                worked = await self.run_once()
            except Exception:  # a database outage must not kill the worker for good
                log.exception("worker %s: claiming or running failed", self.name)
                worked, self.idle_for = False, config.poll_s
            if not worked:
                with anyio.move_on_after(self.idle_for):
                    await bell.wait()

    async def run_once(self) -> bool:
        """Claims and executes one run; ``False`` when there was nothing to do (then
        `idle_for` says how long to sleep unless woken)."""
        config = self.deps.config
        fired = 0
        # Schedules are looked at once per poll interval, not before every claim: a
        # busy worker would otherwise pay a query per run for them.
        if self.tick is not None and time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + config.poll_s
            fired = await self.tick()
        claim, due_in = await anyio.to_thread.run_sync(self._claim)
        if claim is None:
            # A timer already due and still not claimable is another worker's run at
            # this moment: look again after poll_s, as when every look was a poll.
            self.idle_for = 0.0 if fired else min(max(due_in, config.poll_s), config.idle_poll_s)
            return fired > 0
        result = await RunExecution(self.deps, claim).execute()
        self.runs_done += 1
        log.info("worker %s: run %s %s", self.name, claim.run_id, result)
        return True

    def _claim(self) -> tuple[Claim | None, float]:
        """A claim, or none and the seconds until the database's next timer (one trip
        to a worker thread)."""
        store = self.deps.store
        claim = store.claim(self.name, self.deps.config.lease_s)
        return claim, (0.0 if claim is not None else store.next_due_in())


@contextlib.asynccontextmanager
async def running_workers(
    deps: ExecutorDeps, count: int, tick: Tick | None = None
) -> AsyncIterator[list[Worker]]:
    """Runs ``count`` worker loops until the block exits (then cancels them: a run cut
    off mid-step is taken over after its lease expires, with the same keys)."""
    workers = [Worker(deps, worker_name(i), tick) for i in range(count)]
    changes = ChangeFeed(deps.store.engine, interval_s=deps.config.poll_s)
    changes.subscribe(deps.doorbell.ring)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(changes.run)
        for worker in workers:
            tasks.start_soon(worker.run_forever)
        try:
            yield workers
        finally:
            tasks.cancel_scope.cancel()
