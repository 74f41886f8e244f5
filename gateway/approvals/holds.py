"""Waiting for a decision: in-process wake-ups plus database polling.

A decision made through this process wakes its waiters at once (`Signals`). A
decision made through another process on the same database is seen by polling every
`POLL_S`: there is no cross-process channel to trust or configure, and a poll of one
row by primary key is cheap next to a human's reaction time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from gateway.approvals.models import Approval, ApprovalStatus, parse_time
from gateway.clock import Clock, monotonic
from gateway.operations import ProgressCallback

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a waiter re-reads the database
PROGRESS_EVERY_S = 2.0  # how often a held MCP call hears that it is still waiting


class Signals:
    """Wake-ups within one process: per approval, and for any change at all."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._any: set[asyncio.Event] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def fire(self, approval_id: str | None = None) -> None:
        for event in (*self._waiters.get(approval_id or "", ()), *self._any):
            event.set()

    def close(self) -> None:
        """Releases every waiter now (shutdown); later waits return at once."""
        self._closed = True
        for events in (*self._waiters.values(), self._any):
            for event in events:
                event.set()

    async def wait(self, approval_id: str | None, timeout_s: float) -> None:
        """Returns when ``approval_id`` (or, for None, anything) changed here, or after
        ``timeout_s``, whichever comes first."""
        if self._closed or timeout_s <= 0:
            return
        event = asyncio.Event()
        bucket = self._any if approval_id is None else self._waiters.setdefault(approval_id, set())
        bucket.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout_s)
        finally:
            bucket.discard(event)
            if approval_id is not None and not bucket:
                self._waiters.pop(approval_id, None)


def settled(approval: Approval) -> bool:
    """Decided in a way a held call can act on. An approval whose decision is not yet
    durable in the audit log (no ``decision_seq``) is not settled: it may be undone."""
    if approval.status is ApprovalStatus.PENDING:
        return False
    if approval.status is ApprovalStatus.APPROVED:
        return approval.decision_seq is not None
    return True


async def hold(
    approval: Approval,
    *,
    read: Callable[[str], Awaitable[Approval]],
    signals: Signals,
    timeout_s: float,
    progress: ProgressCallback | None,
    clock: Clock = monotonic,
) -> Approval:
    """Waits up to ``timeout_s`` for ``approval`` to settle; returns it as last read.

    ``read`` re-reads the approval (expiring it when due), so a hold ends as soon as
    the approval is decided here or elsewhere, or expires. ``clock`` paces the hold
    and its progress reports (`gateway.clock`); the waits themselves are ``signals``'.
    """
    started = clock()
    deadline = started + timeout_s
    next_progress = started
    current = approval
    while True:
        if settled(current) or signals.closed:
            return current
        now = clock()
        if now >= deadline:
            return current
        if progress is not None and now >= next_progress:
            progress = await _report(progress, current, elapsed=now - started, total=timeout_s)
            next_progress = now + PROGRESS_EVERY_S
        pause = min(POLL_S, deadline - now)
        if progress is not None:
            pause = min(pause, max(0.0, next_progress - now))
        await signals.wait(current.id, pause)
        current = await read(current.id)


async def _report(
    progress: ProgressCallback, approval: Approval, *, elapsed: float, total: float
) -> ProgressCallback | None:
    """Sends one progress notification; a client that cannot take it gets no more."""
    message = f"waiting for approval {approval.id} ({expires_in(approval)})"
    try:
        await progress(round(elapsed, 1), total, message)
    except Exception as exc:  # a gone client must not end the hold (it may still answer)
        log.debug("progress for %s not delivered: %r", approval.id, exc)
        return None
    return progress


def expires_in(approval: Approval) -> str:
    """ "expires in 58 min", for people; approximate (this host's clock)."""
    seconds = (parse_time(approval.expires_at) - datetime.now(UTC)).total_seconds()
    if seconds <= 0:
        return "expired"
    if seconds < 120:
        return f"expires in {int(seconds)} s"
    if seconds < 2 * 3600:
        return f"expires in {int(seconds // 60)} min"
    return f"expires in {int(seconds // 3600)} h"
