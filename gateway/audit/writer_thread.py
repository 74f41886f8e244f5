"""The audit log's writer thread: the group commit itself (`gateway.audit.sequencer`).

One thread per process (per `AuditLog`) drains the log's queue into a batch of whole
append calls, at most ``max_batch`` records, and writes it in one transaction on its
own kept connection (`Appender`). Only then are the callers' futures resolved, one
wake-up per event loop per batch, and the thread waits briefly for the callers it woke
to queue their next appends, so that the next batch collects them all. If the thread
dies of a bug, every caller still waiting is failed, never left waiting.

Separate from the sequencer because this is the one part of the log that runs on its
own thread: everything in `sequencer` runs on a caller's thread (an event loop's, or
the CLI's), and puts requests on the queue or commits inline. What both sides share
stays the log's, behind its lock: whether it accepts appends, what lingers, how many
requests are not settled yet, and what a failed batch means (kept for another try, or
failed with which error); the thread reads and changes it through the `AuditLog` it
writes for.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from gateway.audit.appender import Appender
from gateway.audit.waiters import ErrorFactory, Request, settle_futures
from gateway.inline_budget import InlineBudget

if TYPE_CHECKING:
    from gateway.audit.sequencer import AuditLog

logger = logging.getLogger("gateway.audit")

# Longest the writer waits, after a commit, for the callers it woke to queue their next
# appends (see _commit_batch).
CATCH_UP_WAIT_S = 0.002

STOP = object()  # queued by close(): everything queued before it is still written


class WriterThread:
    """What ``log``'s writer thread runs (`run`, the thread's target): it drains
    ``requests``, the log's queue, until `STOP`. ``budget`` is the log's `InlineBudget`,
    which the thread's commits count in too."""

    def __init__(
        self,
        log: AuditLog,
        engine: Engine,
        origin: str,
        requests: queue.SimpleQueue[Any],
        *,
        max_batch: int,
        budget: InlineBudget,
    ) -> None:
        self._log = log
        self._engine = engine
        self._origin = origin
        self._queue = requests
        self._max_batch = max_batch
        self._budget = budget
        self._in_flight: Sequence[Request] = ()

    def run(self) -> None:
        log = self._log
        appender = Appender(self._engine, self._origin)
        try:
            self._drain_until_stop(appender)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            logger.critical("audit writer thread died", exc_info=exc)
            with log._lock:
                log._accepting = False
                log._failure = f"the audit writer stopped after an internal error ({exc!r})"
            self._settle(self._in_flight, None, log._not_running)
            self._fail_queued()
            with log._lock:
                lingering = log._take_lingering_locked()
            self._settle(lingering, None, log._not_running)
        finally:
            appender.close()

    def _drain_until_stop(self, appender: Appender) -> None:
        carry: Request | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is STOP:
                return
            batch = [first]
            count = len(first.records)
            stop = False
            while count < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    stop = True
                    break
                if count + len(item.records) > self._max_batch:
                    carry = item  # whole calls only: it opens the next batch
                    break
                batch.append(item)
                count += len(item.records)
            self._in_flight = batch
            self._commit_batch(appender, batch)
            self._in_flight = ()
            if stop:
                return

    def _commit_batch(self, appender: Appender, batch: Sequence[Request]) -> None:
        log = self._log
        # The writer's commits count in the inline budget too: an inline commit that
        # was slow once must not keep appends off the loop for good, and a loaded log
        # keeps them off. The commit alone is timed, not the waking of its callers.
        try:
            results = self._budget.timed(
                appender.write, [r.records for r in batch], [r.placed for r in batch]
            )
        except Exception as exc:
            count = sum(len(r.records) for r in batch)
            log._done(batch)
            error = log._commit_failed(count, exc)
            caught_up = self._settle(log._keep_for_retry(batch, exc), None, error)
        else:
            log._done(batch)
            log._committed()
            caught_up = self._settle(batch, results, None)
        # Group commit only works if the next batch collects every caller this one just
        # woke. Without this wait the writer grabs the first one or two re-appends and
        # commits them alone while the rest queue up: batches alternate tiny and large
        # and throughput halves. Bounded, so a busy loop cannot stall the writer; real
        # time, not the log's clock: it bounds how long this thread actually blocks.
        deadline = time.monotonic() + CATCH_UP_WAIT_S
        for event in caught_up:
            event.wait(max(0.0, deadline - time.monotonic()))

    def _settle(
        self,
        batch: Sequence[Request],
        results: list[list[int]] | None,
        error: ErrorFactory | None,
    ) -> list[threading.Event]:
        """Resolves the batch's futures; returns one event per event loop, set once
        that loop has run every caller woken by this batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[int]], Any]]]
        by_loop = {}
        for index, request in enumerate(batch):
            value = None if results is None else results[index]
            if request.sync_future is not None:
                if request.sync_future.done():
                    continue
                if error is not None:
                    request.sync_future.set_exception(error())
                else:
                    request.sync_future.set_result(value)  # type: ignore[arg-type]
            elif request.loop is not None and request.future is not None:
                by_loop.setdefault(request.loop, []).append((request.future, value))
        caught_up = []
        for loop, items in by_loop.items():
            event = threading.Event()
            try:
                loop.call_soon_threadsafe(settle_futures, items, error, event)
            except RuntimeError:
                continue  # that loop is closed: nobody waits for these any more
            caught_up.append(event)
        return caught_up

    def _fail_queued(self) -> None:
        pending = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not STOP:
                pending.append(item)
        if pending:
            self._settle(pending, None, self._log._not_running)
