"""Waiting for something another thread or process does: the one place tests poll.

A test that must see a state it cannot be told about (a row another process commits,
a file a server appends, a run a worker finishes) asks `eventually` (or
`eventually_async` on an event loop) to re-check a condition until it holds. The
deadline is generous on purpose: the suite runs on shared, busy machines, so a
failure here must mean "it never happened", never "it was slow". A condition that
holds returns at once, so the deadline costs nothing when things work.

Nothing else in the tests sleeps to synchronise: time that must pass for the code
under test is moved with an injected clock (`tests.support.clock.FakeClock`) or by
writing times that are already in the past, and "nothing happened" is checked after
the code under test has demonstrably looked (a counted poll), not after a pause.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

# Long enough for a machine under heavy load (both cores busy, other suites running);
# a condition that holds ends the wait at once.
TIMEOUT_S = 60.0
# How often the condition is re-checked: often enough not to slow a passing test,
# rarely enough not to load the machine it waits for.
INTERVAL_S = 0.05


def eventually(
    condition: Callable[[], T],
    what: str,
    *,
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    detail: Callable[[], str] | None = None,
) -> T:
    """Re-checks ``condition`` until it returns something truthy, and returns that.
    Fails the test naming ``what`` (and ``detail()``, say a server's log) if it has
    not after ``timeout_s``; an exception from ``condition`` propagates at once (it
    is a failure, not "not yet")."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _never(what, timeout_s, result, detail)
        time.sleep(interval_s)


async def eventually_async(
    condition: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    detail: Callable[[], str] | None = None,
) -> T:
    """`eventually` for code on an event loop: ``condition`` may be a coroutine
    function, and the loop keeps running between checks."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _never(what, timeout_s, result, detail)
        await anyio.sleep(interval_s)


def _never(
    what: str, timeout_s: float, last: object, detail: Callable[[], str] | None
) -> AssertionError:
    shown = repr(last)
    if len(shown) > 500:
        shown = shown[:500] + "…"
    message = f"not within {timeout_s:g} s: {what} (last: {shown})"
    return AssertionError(message + (f"\n{detail()}" if detail is not None else ""))
