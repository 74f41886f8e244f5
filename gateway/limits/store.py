"""The counters of limits, in the database every replica shares.

Blocking (SQLAlchemy Core); `gateway.limits.limiter` runs it in a worker thread. One
transaction admits a call under all of its limits or under none (a refusal rolls
back what the limits before it counted), through the one store layer: the SQL is the
same on SQLite and PostgreSQL (``INSERT … ON CONFLICT … RETURNING``), and the writes
are ordered by the dialect's write transaction — SQLite's single write lock, taken up
front; on PostgreSQL the row lock of each key's `limit_counters` row, taken in key
order so that two replicas admitting calls under the same limits never deadlock.

Times are epoch seconds on the clock every process shares, passed in (``now``) so the
arithmetic can be checked by moving a clock by hand.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from gateway.limits.windows import (
    CONCURRENT_RETRY_S,
    Refusal,
    limit_key,
    window_retry_after,
    window_start,
)
from gateway.store import dialect_of
from gateway.store.tables import limit_counters, limit_slots
from gateway.types import Limit

# The longest window a limit may have (gateway.policy.decision); a counter untouched
# for longer counts nothing any more.
MAX_WINDOW_S = 31 * 86400

# Counts one call in the key's current window: a later window starts again at 1; an
# earlier one (a replica whose clock lags) counts in the window the row is in.
_COUNT = sa.text(
    "INSERT INTO limit_counters (key, name, window_start, calls, updated_at) "
    "VALUES (:key, :name, :start, 1, :now) "
    "ON CONFLICT (key) DO UPDATE SET "
    "calls = CASE WHEN excluded.window_start > limit_counters.window_start THEN 1 "
    "ELSE limit_counters.calls + 1 END, "
    "window_start = CASE WHEN excluded.window_start > limit_counters.window_start "
    "THEN excluded.window_start ELSE limit_counters.window_start END, "
    "updated_at = excluded.updated_at "
    "RETURNING calls, window_start"
)

# Takes the key's row lock (creating the row) for counting its slots.
_LOCK = sa.text(
    "INSERT INTO limit_counters (key, name, window_start, calls, updated_at) "
    "VALUES (:key, :name, 0, 0, :now) "
    "ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at"
)


@dataclass(frozen=True)
class Admitted:
    """A call admitted under its limits: the concurrency slots it holds."""

    slots: tuple[str, ...]


class _Refused(Exception):
    """Raised inside the transaction so that it rolls back."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal


class LimitStore:
    def __init__(self, engine: Engine) -> None:
        self._dialect = dialect_of(engine)
        # Commits that do not wait for the disk: durable across a crash of this process,
        # not of the machine. Counters are operational state, not evidence (the audit
        # log holds the refusals): a machine crash may forget its last milliseconds of
        # counts, and an admission no longer waits for an fsync (a window limit on
        # SQLite: a median of 3.9 ms → 0.2 ms on the test machine).
        self._engine = self._dialect.relaxed_engine(engine)
        self._owned = self._engine is not engine

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()

    def acquire(
        self,
        limits: Sequence[Limit],
        *,
        now: float,
        holder: str,
        request_id: str,
        lease_s: float,
    ) -> Admitted | Refusal:
        """Counts one call under every limit, or under none and returns the first
        `Refusal`. Requires limits of distinct keys (`gateway.policy.decision` refuses
        a decision naming one name and scope twice). Raises the driver's error when
        the database cannot be used: nothing is counted then."""
        ordered = sorted(limits, key=limit_key)
        try:
            with self._dialect.write_transaction(self._engine) as conn:
                slots = [
                    slot
                    for limit in ordered
                    if (slot := self._admit(conn, limit, now, holder, request_id, lease_s))
                ]
        except _Refused as refused:
            return refused.refusal
        return Admitted(tuple(slots))

    def release(self, slots: Sequence[str]) -> None:
        """Frees the slots of a call that ended (missing ones are already gone)."""
        if not slots:
            return
        with self._dialect.write_transaction(self._engine) as conn:
            conn.execute(sa.delete(limit_slots).where(limit_slots.c.id.in_(list(slots))))

    def in_use(self, limit: Limit, *, now: float) -> int:
        """The slots of ``limit`` that count at ``now``."""
        with self._engine.connect() as conn:
            return _in_use(conn, limit_key(limit), now)

    def sweep(self, *, now: float) -> int:
        """Deletes slots whose lease ended and counters untouched for longer than any
        window; returns how many rows went. Neither counts anything any more."""
        with self._dialect.write_transaction(self._engine) as conn:
            slots = conn.execute(sa.delete(limit_slots).where(limit_slots.c.expires_at <= now))
            counters = conn.execute(
                sa.delete(limit_counters).where(
                    limit_counters.c.updated_at < now - MAX_WINDOW_S,
                    ~sa.exists().where(limit_slots.c.key == limit_counters.c.key),
                )
            )
        return int(slots.rowcount or 0) + int(counters.rowcount or 0)

    def _admit(
        self,
        conn: Connection,
        limit: Limit,
        now: float,
        holder: str,
        request_id: str,
        lease_s: float,
    ) -> str | None:
        key = limit_key(limit)
        if limit.calls is not None and limit.window_s is not None:
            start = window_start(now, limit.window_s)
            row = conn.execute(
                _COUNT, {"key": key, "name": limit.name, "start": start, "now": now}
            ).one()
            if row.calls > limit.calls:
                retry = window_retry_after(float(row.window_start), limit.window_s, now)
                raise _Refused(Refusal(limit, "calls", retry))
        if limit.concurrent is None:
            return None
        if limit.calls is None:  # else the count above holds the row lock already
            conn.execute(_LOCK, {"key": key, "name": limit.name, "now": now})
        conn.execute(
            sa.delete(limit_slots).where(limit_slots.c.key == key, limit_slots.c.expires_at <= now)
        )
        if _in_use(conn, key, now) >= limit.concurrent:
            raise _Refused(Refusal(limit, "concurrent", CONCURRENT_RETRY_S))
        slot = secrets.token_hex(16)
        conn.execute(
            sa.insert(limit_slots).values(
                id=slot,
                key=key,
                name=limit.name,
                holder=holder,
                request_id=request_id,
                acquired_at=now,
                expires_at=now + lease_s,
            )
        )
        return slot


def _in_use(conn: Connection, key: str, now: float) -> int:
    count = conn.scalar(
        sa.select(sa.func.count())
        .select_from(limit_slots)
        .where(limit_slots.c.key == key, limit_slots.c.expires_at > now)
    )
    return int(count or 0)
