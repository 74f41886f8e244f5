"""Worker loops: claim a runnable run, execute it, repeat.

A worker holds at most one run at a time; ``executor.workers`` loops run in each
process (``gateway serve`` and ``gateway worker`` alike), and any number of processes
share one database. An idle worker looks for work every ``poll_s``, or at once when a
run is submitted in its own process (`Doorbell`); at most that often it also fires due
schedules.
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

    async def run_forever(self) -> None:
        config = self.deps.config
        while True:
            bell = self.deps.doorbell.current()
            try:
                worked = await self.run_once()
            except Exception:  # a database outage must not kill the worker for good
                log.exception("worker %s: claiming or running failed", self.name)
                worked = False
            if not worked:
                with anyio.move_on_after(config.poll_s):
                    await bell.wait()

    async def run_once(self) -> bool:
        """Claims and executes one run; ``False`` when there was nothing to do."""
        fired = 0
        # Schedules are looked at once per poll interval, not before every claim: a
        # busy worker would otherwise pay a query per run for them.
        if self.tick is not None and time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + self.deps.config.poll_s
            fired = await self.tick()
        claim = await anyio.to_thread.run_sync(
            self.deps.store.claim, self.name, self.deps.config.lease_s
        )
        if claim is None:
            return fired > 0
        result = await RunExecution(self.deps, claim).execute()
        self.runs_done += 1
        log.info("worker %s: run %s %s", self.name, claim.run_id, result)
        return True


@contextlib.asynccontextmanager
async def running_workers(
    deps: ExecutorDeps, count: int, tick: Tick | None = None
) -> AsyncIterator[list[Worker]]:
    """Runs ``count`` worker loops until the block exits (then cancels them: a run cut
    off mid-step is taken over after its lease expires, with the same keys)."""
    workers = [Worker(deps, worker_name(i), tick) for i in range(count)]
    async with anyio.create_task_group() as tasks:
        for worker in workers:
            tasks.start_soon(worker.run_forever)
        try:
            yield workers
        finally:
            tasks.cancel_scope.cancel()
