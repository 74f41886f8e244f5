"""The clock every process using one database shares, read without a round trip.

Leases and windows that several replicas count together must be measured on one
clock (architecture.md §8): the database's. `SharedClock` reads it once, keeps its
offset from this machine's clock, and reads it again every ``resync_s``; in between
a reading costs no query. The error is half a round trip at the last reading plus the
machine clock's drift since, far below any lease or window it measures.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from gateway.store.db import dialect_of

RESYNC_S = 60.0


class SharedClock:
    """Epoch seconds on the database's clock. Blocking on a resync (a query): call it
    from a worker thread. Raises the driver's error when the database cannot be
    reached at a resync."""

    def __init__(self, engine: Engine, *, resync_s: float = RESYNC_S) -> None:
        self._engine = engine
        self._dialect = dialect_of(engine)
        self._resync_s = resync_s
        self._lock = threading.Lock()
        self._offset = 0.0
        self._synced_at: float | None = None  # time.monotonic() of the last reading

    def __call__(self) -> float:
        with self._lock:
            due = self._synced_at is None or time.monotonic() - self._synced_at >= self._resync_s
        if due:
            self._resync()
        return time.time() + self._offset

    def _resync(self) -> None:
        before = time.time()
        with self._engine.connect() as conn:
            database = self._dialect.clock(conn).timestamp()
        after = time.time()
        with self._lock:
            self._offset = database - (before + after) / 2
            self._synced_at = time.monotonic()
