"""What a caller of the audit log waits on: one append's records and its future, and
how the writer thread (or an inline append) resolves those futures on the event loops
they belong to (`gateway.audit.writer_thread`, `gateway.audit.sequencer`).

Invariant: a future is only ever resolved on its own event loop's thread, and a caller
who stopped waiting (cancelled, or its loop closed) is skipped, never raised into.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any

from gateway.audit.batch import PreparedRecord
from gateway.errors import AuditUnavailable

ErrorFactory = Callable[[], AuditUnavailable]


class Request:
    """One append call: its records land contiguously, in one transaction."""

    __slots__ = ("future", "kept", "loop", "placed", "records", "sync_future")

    def __init__(
        self,
        records: tuple[PreparedRecord, ...],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[list[int]] | None = None,
        sync_future: concurrent.futures.Future[list[int]] | None = None,
        kept: bool = False,
    ) -> None:
        self.records = records
        self.loop = loop
        self.future = future
        self.sync_future = sync_future
        # Submitted (nobody waits): kept for another try when its transaction fails
        # with nothing appended, instead of failing.
        self.kept = kept
        # The seqs a transaction whose COMMIT was cut off gave these records: where the
        # next try looks before appending them (`append_rows`).
        self.placed: list[int] | None = None


def is_running(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is the event loop of the calling thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def resolve_elsewhere(
    requests: Sequence[Request], results: list[list[int]] | None, error: ErrorFactory | None
) -> None:
    """Resolves the lingering requests an inline append wrote first (``results`` holds
    theirs first): on the calling loop at once, on another loop through that loop."""
    running = asyncio.get_running_loop()
    for index, request in enumerate(requests):
        loop, future = request.loop, request.future
        if loop is None or future is None:
            continue
        items = [(future, None if results is None else results[index])]
        if loop is running:
            settle_futures(items, error, None)
            continue
        try:
            loop.call_soon_threadsafe(settle_futures, items, error, None)
        except RuntimeError:
            continue  # that loop is closed: nobody waits for this any more


def settle_futures(
    items: list[tuple[asyncio.Future[list[int]], Any]],
    error: ErrorFactory | None,
    caught_up: threading.Event | None,
) -> None:
    for future, value in items:
        if future.done():
            continue  # its caller was cancelled
        if error is not None:
            future.set_exception(error())
        else:
            future.set_result(value)
    # Queued behind the wake-ups of the tasks just resolved: when it runs, each of them
    # has run up to its next await, i.e. has queued its next append if it has one.
    if caught_up is not None:
        asyncio.get_running_loop().call_soon(caught_up.set)
