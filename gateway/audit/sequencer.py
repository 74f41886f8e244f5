"""The sequencer: the one place entries are appended, by group commit.

Callers put (records, future) on a queue and wait. One writer thread per process
(`writer_thread`) drains the queue into a batch, and in one transaction: takes the
database-wide writer lock, reads the chain head from the database, builds the leaves,
inserts entries and payloads, commits. Only then are the callers' futures resolved, one
wake-up per event loop per batch.

An append to an idle SQLite log skips the queue and commits on the caller's event loop
(`AuditLog`, docs/decisions/0012); it never runs while anything queued before it is
unwritten, so the chain order is still the order of the calls.

What nobody waits for (`submit`: a call's outcome, a run's events) lingers for up to
`LINGER_S` and is written in the transaction of the next append, in front of it, so
that it costs no commit (an fsync) of its own (docs/decisions/0026). If that
transaction fails with nothing appended (the database is down), it is kept and tried
again, every `RETRY_S` or with the next append, until it commits: a database restart
loses no outcome of a call that was forwarded before it. A failure during COMMIT, when
the records may already be in the log, keeps them too, with the seqs that transaction
gave them: the transaction that tries them again first looks there (under the writer
lock, so the cut-off one has ended either way) and appends only what the log does not
hold, so nothing is written twice (docs/decisions/0040). Only a process that dies or
stops while the database is still away gives them up; the verifier reports such calls
as having an unknown outcome.

No chain state is kept in memory. Because the head is read under the lock inside the
transaction that extends it, several processes (each with its own writer thread)
append to one chain that never forks, and a failed batch leaves nothing to undo.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from gateway.audit.appender import Appender, CommitUnknown, WriterBusy
from gateway.audit.batch import PreparedRecord, check_log, prepare_record, write_batch
from gateway.audit.records import AuditRecord
from gateway.audit.waiters import ErrorFactory, Request, is_running, resolve_elsewhere
from gateway.audit.writer_thread import STOP, WriterThread
from gateway.clock import Clock, monotonic
from gateway.errors import AuditCommitUnknown, AuditUnavailable, ConfigError
from gateway.inline_budget import InlineBudget
from gateway.store import dialect_of
from gateway.store.dialect import describe_error

logger = logging.getLogger("gateway.audit")

# An append arriving this soon after the previous one goes to the writer thread:
# appends that come close together are what group commit is for, and committing them
# one by one on the event loop would serialize them behind each other's fsync.
INLINE_QUIET_S = 0.001

# Longest a submitted record (nobody waits for its commit) waits for the next append to
# share its transaction before it is queued alone (docs/decisions/0026). Bounds how much
# later than before an outcome becomes durable; a commit of its own costs an fsync.
LINGER_S = 0.010

# How often submitted records whose transaction failed with nothing appended are tried
# again on their own (they also ride in any append's transaction before then), and how
# many records are kept for that at most: beyond it, the oldest are given up (logged).
RETRY_S = 1.0
MAX_KEPT = 10_000


class AuditLog:
    """The audit log's append side. One instance (one writer thread) per process.

    ``append`` returns only after the transaction holding the records has committed,
    and raises `AuditUnavailable` (nothing of that call appended) if it did not.

    On a SQLite file, an ``append`` that finds the log idle (nothing queued, no batch
    being written, no other writer holding the database) commits on the calling event
    loop's thread instead of handing over to the writer thread: a fraction of a
    millisecond of SQLite work, against two thread wake-ups on the call's critical
    path. Never while recent commits, inline or in the writer thread, took longer than
    the `InlineBudget` on average (a slow disk must not stall the loop), and never on
    PostgreSQL, where a commit is network round trips.

    ``clock`` times those commits and the gaps between appends (`gateway.clock`).
    """

    def __init__(
        self, engine: Engine, origin: str, *, max_batch: int = 512, clock: Clock = monotonic
    ) -> None:
        if not origin or not origin.isprintable() or origin != origin.strip():
            raise ConfigError(f"audit origin {origin!r} must be a non-empty printable line")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._engine = engine
        self._origin = origin
        self._clock = clock
        self._database = engine.url.render_as_string(hide_password=True)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Guards the accepting flag together with queue puts, so no request can slip
        # in behind the stop marker and wait forever.
        self._lock = threading.Lock()
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._failure: str | None = None
        self._checked = False  # check_log passed: the database holds this log (or none)
        # Requests queued and not yet settled; an inline append waits for none of them
        # (chain order is queue order). Guarded by _lock.
        self._pending = 0
        self._inline: Appender | None = None
        self._inline_lock = threading.Lock()  # one inline append at a time, any thread
        self._budget = InlineBudget(clock=clock)  # commit times, inline and writer thread
        self._last_append = -math.inf  # clock() of the latest append
        # Submitted requests waiting for the next append's transaction (not queued yet,
        # not in _pending); the timer that queues them alone after LINGER_S. Guarded by
        # _lock. They always enter the chain before anything appended after them.
        self._lingering: list[Request] = []
        self._linger_timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
        # Called after every commit of appends, from the committing thread.
        self._commit_listeners: list[Callable[[], None]] = []
        # What the writer thread runs: it drains the queue (writer_thread).
        self._writer = WriterThread(
            self, engine, origin, self._queue, max_batch=max_batch, budget=self._budget
        )

    @property
    def origin(self) -> str:
        return self._origin

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Calls ``listener`` after each commit of appends of this log (entries in the
        database), from whichever thread committed (the writer thread, an event
        loop's): it must be quick and thread-safe. The checkpointer's wake-up."""
        self._commit_listeners.append(listener)

    def _committed(self) -> None:
        for listener in self._commit_listeners:
            listener()

    async def start(self) -> None:
        """Checks the database (reachable, migrated, same origin), then starts the
        writer thread."""
        thread = threading.Thread(target=self._writer.run, name="audit-writer", daemon=True)
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this AuditLog was already started")
            self._thread = thread
        inline = Appender(self._engine, self._origin, never_wait=True)
        try:
            await asyncio.to_thread(check_log, self._engine, self._origin)
            if dialect_of(self._engine).writes_inline(self._engine):
                await asyncio.to_thread(inline.connect)  # not on the loop, at the first append
                self._inline = inline
        except BaseException:
            inline.close()
            with self._lock:
                self._thread = None  # nothing started: a later start() may try again
            raise
        with self._lock:
            self._accepting = True
            self._checked = True
        # Daemon: an unclosed log must not hang interpreter exit; whatever it still held
        # was never acknowledged to anyone.
        thread.start()

    async def append(self, *records: AuditRecord) -> list[int]:
        """Appends ``records`` contiguously in one transaction; returns their seqs in
        order once committed. If the task is cancelled while waiting, the records may
        still be committed."""
        prepared = tuple(prepare_record(r) for r in records)
        if prepared:
            seqs = self._append_inline(prepared)
            if seqs is not None:
                return seqs
        return await self._queue_prepared(prepared)

    def submit(self, *records: AuditRecord) -> asyncio.Future[list[int]]:
        """Takes ``records`` for the log and returns the future of their seqs, resolved
        after the commit. For appends the caller need not wait for: they are written
        in the transaction of the next append (in front of it), or on their own after
        `LINGER_S` if none comes, so they cost no commit of their own. Submission order
        is chain order, and `close` writes what is still lingering or queued, so
        nothing submitted is dropped on a graceful shutdown. Raises AuditUnavailable
        at once when not running."""
        prepared = tuple(prepare_record(r) for r in records)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        if not prepared:
            future.set_result([])
            return future
        with self._lock:
            if not self._accepting:
                raise self._not_running()
            self._lingering.append(Request(prepared, loop=loop, future=future, kept=True))
            if self._linger_timer is None:
                self._linger_timer = (loop, loop.call_later(LINGER_S, self._stop_lingering))
        return future

    def _stop_lingering(self) -> None:
        """The linger timer: no append came, so what lingers is queued alone."""
        with self._lock:
            self._linger_timer = None
            if self._accepting:
                self._queue_lingering_locked()

    def _queue_lingering_locked(self) -> None:
        """Queues every lingering request, in order. Requires ``_lock``."""
        for request in self._lingering:
            self._queue.put(request)
        self._pending += len(self._lingering)
        self._take_lingering_locked()

    def _take_lingering_locked(self) -> list[Request]:
        """Takes every lingering request (for an append to write first), and stops the
        timer when on its loop (elsewhere it fires and finds nothing, or the newer
        ones: early, which is harmless). Requires ``_lock``."""
        taken, self._lingering = self._lingering, []
        timer = self._linger_timer
        if timer is not None and is_running(timer[0]):
            timer[1].cancel()  # a loop's timers are its own thread's to cancel
            self._linger_timer = None
        return taken

    def _queue_prepared(self, prepared: tuple[PreparedRecord, ...]) -> asyncio.Future[list[int]]:
        self._last_append = self._clock()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        if not prepared:
            future.set_result([])
            return future
        with self._lock:
            if not self._accepting:
                raise self._not_running()
            # What lingers goes first, into the same batch: the writer drains both.
            self._queue_lingering_locked()
            self._queue.put(Request(prepared, loop=loop, future=future))
            self._pending += 1
        return future

    def _append_inline(self, prepared: tuple[PreparedRecord, ...]) -> list[int] | None:
        """Commits ``prepared`` on the calling thread if the log is idle (see the class
        docstring); ``None`` when it did not, having appended nothing."""
        inline = self._inline
        now = self._clock()
        quiet = now - self._last_append >= INLINE_QUIET_S
        self._last_append = now
        if inline is None or not quiet or not self._budget.allows():
            return None
        if not self._inline_lock.acquire(blocking=False):
            return None
        try:
            with self._lock:
                if not self._accepting or self._pending:
                    return None
                lingering = self._take_lingering_locked()
            groups = [*(r.records for r in lingering), prepared]
            try:
                results = self._budget.timed(inline.write, groups, [r.placed for r in lingering])
            except WriterBusy:
                with self._lock:  # nothing written: they linger again, still first
                    self._lingering[:0] = lingering
                return None
            except Exception as exc:
                error = self._commit_failed(sum(len(g) for g in groups), exc)
                given_up = self._keep_for_retry(lingering, exc)
                resolve_elsewhere(given_up, None, error)
                raise error() from exc
            self._committed()
            resolve_elsewhere(lingering, results, None)
            return results[-1]
        finally:
            self._inline_lock.release()

    def append_sync(self, *records: AuditRecord) -> list[int]:
        """Blocking `append` for code without an event loop (the CLI). Goes through the
        writer thread when it runs, otherwise writes in the calling thread."""
        prepared = tuple(prepare_record(r) for r in records)
        if not prepared:
            return []
        with self._lock:
            if self._failure is not None:
                raise self._not_running()
            future: concurrent.futures.Future[list[int]] | None = None
            if self._accepting:
                future = concurrent.futures.Future()
                self._queue_lingering_locked()
                self._queue.put(Request(prepared, sync_future=future))
                self._pending += 1
        if future is not None:
            return future.result()
        if not self._checked:
            check_log(self._engine, self._origin)
            self._checked = True
        try:
            written = write_batch(self._engine, self._origin, [prepared])[0]
        except Exception as exc:
            raise self._commit_failed(len(prepared), exc)() from exc
        self._committed()
        return written

    async def close(self) -> None:
        """Stops accepting appends, writes everything already queued, stops the thread,
        and returns the connections (also after the writer thread died)."""
        with self._lock:
            thread = self._thread
            stopping = thread is not None and self._accepting
            if stopping:
                self._accepting = False
                self._queue_lingering_locked()
                self._queue.put(STOP)
        if stopping:
            assert thread is not None
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self._close_inline)

    def _close_inline(self) -> None:
        with self._inline_lock:  # after an inline append another thread is making
            inline, self._inline = self._inline, None
            if inline is not None:
                inline.close()

    # --- after a batch (the writer thread's, or an inline append's) ------------------

    def _keep_for_retry(self, batch: Sequence[Request], exc: BaseException) -> list[Request]:
        """After ``batch`` failed with ``exc``: puts its submitted requests back in front
        of what lingers, to be tried again (module docstring), unless the log is
        closing. Returns the requests that fail now."""
        if isinstance(exc, CommitUnknown):
            placed = exc.result
            if not isinstance(placed, list) or len(placed) < len(batch):
                return list(batch)  # nowhere to look first: a retry could write twice
            for request, seqs in zip(batch, placed, strict=False):
                request.placed = seqs
        retry = [r for r in batch if r.kept and r.loop is not None]
        fail = [r for r in batch if not (r.kept and r.loop is not None)]
        with self._lock:
            if not self._accepting:
                return list(batch)
            self._lingering[:0] = retry
            kept = sum(len(r.records) for r in self._lingering)
            while kept > MAX_KEPT and len(self._lingering) > 1:
                oldest = self._lingering.pop(0)
                kept -= len(oldest.records)
                fail.append(oldest)
            if retry and self._linger_timer is None:
                loop = retry[0].loop
                assert loop is not None
                try:
                    loop.call_soon_threadsafe(self._arm_retry, loop)
                except RuntimeError:  # that loop is closed: nobody can write these
                    pass
        return fail

    def _arm_retry(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``: queues what lingers after `RETRY_S`, unless a timer already will."""
        with self._lock:
            if self._linger_timer is None and self._lingering and self._accepting:
                self._linger_timer = (loop, loop.call_later(RETRY_S, self._stop_lingering))

    def _done(self, batch: Sequence[Request]) -> None:
        """``batch`` is written (or failed): an inline append need not wait for it."""
        with self._lock:
            self._pending -= len(batch)

    # --- errors ----------------------------------------------------------------------

    def _commit_failed(self, count: int, exc: BaseException) -> ErrorFactory:
        cause = describe_error(exc.__cause__ or exc if isinstance(exc, CommitUnknown) else exc)
        if isinstance(exc, CommitUnknown):
            outcome = "the connection broke during COMMIT, so they may or may not be in the log"
        else:
            outcome = "none of them was appended"
        message = (
            f"audit log unavailable: {count} audit entries could not be committed to "
            f"{self._database} ({cause}); {outcome}. Check that the "
            "database is reachable, writable and migrated (gateway.store.migrate)."
        )
        logger.error(message)
        details = {"entries": count, "database": self._database, "cause": cause}
        if isinstance(exc, CommitUnknown):
            return lambda: AuditCommitUnknown(message, details=details)
        return lambda: AuditUnavailable(message, details=details)

    def _not_running(self) -> AuditUnavailable:
        reason = self._failure or (
            "the audit log is not running (start() was not awaited, or close() was)"
        )
        return AuditUnavailable(f"audit log unavailable: {reason}; nothing was appended")
