"""One watch per process on the database, for changes made through other connections.

Idle loops (the executor's workers) sleep until there may be something to do instead
of polling the database for it (docs/decisions/0042). `ChangeFeed.run` keeps the
dialect's watch (`Dialect.changes`: SQLite's ``PRAGMA data_version``, PostgreSQL's
``LISTEN``) and calls every subscriber on each change it reports. A change is a hint
to look, never the work itself: the subscriber looks in the database, and keeps a slow
poll of its own, so a change missed (the watch failed and was started again) delays
work, never loses it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
from sqlalchemy import Engine

from gateway.store.db import dialect_of

log = logging.getLogger(__name__)

# After the watch failed (the database away), how long before it is made again. Every
# subscriber is called at the failure: each looks for itself meanwhile.
RETRY_S = 1.0


class ChangeFeed:
    """Calls its subscribers when the database may have changed (any process)."""

    def __init__(self, engine: Engine, *, interval_s: float) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, wake: Callable[[], None]) -> None:
        """``wake`` is called on the event loop, quickly (it sets an event)."""
        self._subscribers.append(wake)

    async def run(self) -> None:
        """Watches until cancelled."""
        dialect = dialect_of(self._engine)
        while True:
            try:
                changes = dialect.changes(self._engine, self._interval_s)
                async with contextlib.aclosing(changes):
                    async for _ in changes:
                        self._wake()
            except Exception as exc:  # the database away: look, and watch again later
                log.warning("watching the database for changes failed (%s); retrying", exc)
            self._wake()
            await anyio.sleep(RETRY_S)

    def _wake(self) -> None:
        for wake in self._subscribers:
            wake()
