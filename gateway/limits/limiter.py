"""Admitting a call under the limits its decision carries, for the pipeline.

`Limiter.admit` counts the call in every one of its limits (one transaction, in a
worker thread) and returns the `Admission` whose `release` frees its concurrency
slots when the call ends; it raises `CallLimited` (429) when a limit is reached and
`LimitsUnavailable` (503) when the counters cannot be used — a call with limits is
never forwarded uncounted. A slot this process fails to free (the database went away
as the call ended, or the process died) stops counting ``lease_s`` after it was taken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from functools import partial

import anyio

from gateway.errors import CallLimited, LimitsUnavailable
from gateway.limits.store import Admitted, LimitStore
from gateway.limits.windows import Refusal
from gateway.metrics import CALLS_LIMITED, LIMITS_UNAVAILABLE
from gateway.store.dialect import describe_error
from gateway.types import Limit

log = logging.getLogger(__name__)

# What a caller is told when the counters are unreachable: soon, as for an overloaded
# policy engine.
UNAVAILABLE_RETRY_S = 2
# How often rows that count nothing any more are deleted (on the shared clock).
SWEEP_EVERY_S = 3600.0


class Admission:
    """A call admitted under its limits; `release` once it has ended (idempotent)."""

    def __init__(self, limiter: Limiter | None, slots: tuple[str, ...]) -> None:
        self._limiter = limiter
        self._slots = slots

    @property
    def slots(self) -> tuple[str, ...]:
        return self._slots

    async def release(self) -> None:
        slots, self._slots = self._slots, ()
        if slots and self._limiter is not None:
            await self._limiter.release(slots)


NOTHING_HELD = Admission(None, ())


class Limiter:
    """``clock``: epoch seconds on the clock every replica shares
    (`gateway.store.shared_clock.SharedClock`; called in a worker thread)."""

    def __init__(self, store: LimitStore, clock: Callable[[], float], *, lease_s: float) -> None:
        self._store = store
        self._clock = clock
        self.lease_s = lease_s
        # Which process holds a slot: for an operator reading limit_slots.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._next_sweep: float | None = None
        self._sweeping: set[asyncio.Task[None]] = set()

    async def admit(self, limits: Sequence[Limit], request_id: str) -> Admission:
        """Raises `CallLimited` or `LimitsUnavailable`; nothing is counted then."""
        if not limits:
            return NOTHING_HELD
        try:
            now, result = await anyio.to_thread.run_sync(partial(self._acquire, limits, request_id))
        except Exception as exc:
            LIMITS_UNAVAILABLE.inc()
            log.error("limits of call %s could not be counted: %s", request_id, describe_error(exc))
            raise LimitsUnavailable(
                "the counters of this call's limits cannot be reached; the call was not "
                f"executed — retry after {UNAVAILABLE_RETRY_S} s",
                retry_after_s=UNAVAILABLE_RETRY_S,
            ) from None
        self._maybe_sweep(now)
        if isinstance(result, Refusal):
            CALLS_LIMITED.labels(result.limit.name, result.kind).inc()
            raise CallLimited(
                result.describe(), retry_after_s=result.retry_after_s, details=result.to_dict()
            )
        return Admission(self, result.slots)

    def close(self) -> None:
        self._store.close()

    async def release(self, slots: Sequence[str]) -> None:
        try:
            await anyio.to_thread.run_sync(self._store.release, slots)
        except Exception as exc:  # the lease frees them
            log.warning(
                "concurrency slots %s not freed (%s); they stop counting after %s s",
                ", ".join(slots),
                describe_error(exc),
                self.lease_s,
            )

    def _acquire(
        self, limits: Sequence[Limit], request_id: str
    ) -> tuple[float, Admitted | Refusal]:
        now = self._clock()
        return now, self._store.acquire(
            limits, now=now, holder=self.holder, request_id=request_id, lease_s=self.lease_s
        )

    def _maybe_sweep(self, now: float) -> None:
        if self._next_sweep is not None and now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        task = asyncio.ensure_future(self._sweep(now))
        self._sweeping.add(task)
        task.add_done_callback(self._sweeping.discard)

    async def _sweep(self, now: float) -> None:
        try:
            await anyio.to_thread.run_sync(partial(self._store.sweep, now=now))
        except Exception as exc:
            log.warning("limit counters not swept: %s", describe_error(exc))
