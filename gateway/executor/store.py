"""The run store: runs, steps and attempts in SQL, with leases and fencing tokens.

Every time here is the **database clock** (`RunStore.now`): a worker's own clock never
decides whether a lease expired or a timer fired, so workers on machines whose clocks
disagree still agree on who owns a run.

Ownership protocol (architecture.md §8):

- `claim` picks one runnable run (pending; running with an expired lease; waiting
  whose ``wake_at`` has come), bumps its ``fencing_token`` and leases it, in one
  statement: PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once
  without blocking each other; SQLite has a single writer (``BEGIN IMMEDIATE``,
  `Dialect.write_transaction`).
- `renew` extends the lease while the token is current.
- Every other write of a claimed run is fenced (`gateway.executor.progress`): its
  first statement (on PostgreSQL, the first part of its one statement) updates the run
  row ``WHERE fencing_token = :mine``; a worker that lost its lease (paused past
  expiry, partitioned) finds zero rows, gets `LeaseLost` and writes nothing. On
  PostgreSQL the row lock taken by that statement also orders the write against a
  concurrent claim.

Invariant that makes takeover harmless: a step's ``succeeded`` row is written only by
the holder of the current token, and a step that is ``succeeded`` is never started
again; an attempt started by a dead worker is marked ``abandoned`` and the step runs
again with the same idempotency key, which the tool uses to apply its effect once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from gateway.clock import Clock, monotonic
from gateway.executor.step_state import StepStatus
from gateway.inline_budget import InlineBudget
from gateway.store import dialect_of
from gateway.store.tables import approvals, run_steps, runs, schedules, step_attempts

T = TypeVar("T")

# Set while a write runs on the event loop's thread (`RunStore.inline`).
_INLINE: ContextVar[bool] = ContextVar("gateway_executor_inline_write", default=False)

ACTIVE = ("pending", "running", "waiting")
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Claim:
    run_id: str
    token: int
    worker: str


@dataclass(frozen=True)
class StepFinish:
    """An attempt that ended: its own status and error, and its step's new columns
    (written by `gateway.executor.progress`, possibly with a later write)."""

    step_id: str
    purpose: str  # "step" or "compensate"
    attempt: int
    status: str
    error: dict[str, Any] | None
    step_values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Loaded:
    """What a worker reads once when it claims a run (see `RunStore.load`)."""

    run: Any
    steps: list[Any]
    clock: float


class RunStore:
    def __init__(self, engine: Engine, *, clock: Clock = monotonic) -> None:
        self.engine = engine
        self.dialect = dialect_of(engine)
        self.now = self.dialect.now()
        # Progress writes (claims, attempts, step results) are committed without
        # waiting for the disk: a killed process loses nothing (the commit is in the
        # database's memory and WAL), and what a power loss or database crash could
        # lose is only progress, which is redone with the same idempotency keys (the
        # tool applies the effect once) — never a run a client was told exists, nor
        # an audit entry. docs/workflows.md, "Durability". A second engine with that
        # setting per connection, so no transaction pays a statement to ask for it.
        self._relaxed = self.dialect.relaxed_engine(engine)
        # The connections of writes made on the event loop (`inline`): SQLite only.
        self._inline = self.dialect.never_waiting_engine(self._relaxed)
        # Writes are made on the event loop (`inline`) while the recent ones, inline or
        # not, were fast; slower (contention, a slow disk), they go to threads, so the
        # event loop is not stalled.
        self._budget = InlineBudget(clock=clock)

    # --- transactions ----------------------------------------------------------------

    @contextmanager
    def write(self, *, durable: bool = False) -> Iterator[Connection]:
        """A write transaction: SQLite takes its write lock up front (a read that later
        upgrades could fail at once with "database is locked"); PostgreSQL plain.
        ``durable``: the commit is on disk before this returns (new runs, cancels,
        schedules); otherwise it may trail by a few milliseconds (see above)."""
        engine = self.engine if durable else self._relaxed
        if _INLINE.get():
            assert self._inline is not None and not durable
            engine = self._inline
        with self.dialect.write_transaction(engine) as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A progress connection whose every statement commits on its own: for a write
        that is one statement (`gateway.executor.progress_one_statement`), no BEGIN or COMMIT
        round trips."""
        with self._relaxed.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def inline(
        self, function: Callable[..., T], *args: Any, **kwargs: Any
    ) -> tuple[bool, T | None]:
        """Makes the progress write ``function(*args, **kwargs)`` on the calling thread,
        the event loop's, if it can do so without waiting for anyone: SQLite, no other
        writer of this process holding the database (tried without waiting), and none
        of another process (BEGIN IMMEDIATE with no busy timeout). Returns ``(True,
        result)``; or ``(False, None)`` having written nothing, and the caller writes
        from a thread as usual.

        Why: such a write is a few tenths of a millisecond of SQLite work, less than
        the two thread hops around it; and made the moment a step's call returns, it
        goes before the audit writer's commit of that call's outcome instead of queuing
        behind it. A write that would wait never blocks the event loop, and none is
        made here while recent writes took longer than the `InlineBudget` on average."""
        if self._inline is None or not self._budget.allows():
            return False, None
        with self.dialect.process_writer(self.engine, wait=False) as free:
            if not free:
                return False, None
            token = _INLINE.set(True)
            try:
                return True, self.timed(function, *args, **kwargs)
            except sa.exc.OperationalError as exc:
                if not self.dialect.is_busy(exc):
                    raise
                return False, None  # rolled back: nothing written
            finally:
                _INLINE.reset(token)

    def timed(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, a write, counted in the running average that
        decides whether writes may be made inline."""
        return self._budget.timed(function, *args, **kwargs)

    def close(self) -> None:
        if self._inline is not None and self._inline is not self._relaxed:
            self._inline.dispose()
        if self._relaxed is not self.engine:
            self._relaxed.dispose()

    def clock(self) -> float:
        with self.engine.connect() as conn:
            return float(conn.execute(sa.select(self.now)).scalar_one())

    # --- leases -------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float) -> Claim | None:
        now = self.now
        candidate = (
            sa.select(runs.c.id)
            .where(
                runs.c.status.in_(ACTIVE),
                sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now),
                sa.or_(
                    runs.c.wake_at.is_(None),
                    runs.c.wake_at <= now,
                    _approval_decided(),
                    _review_decided(),
                ),
            )
            .order_by(sa.func.coalesce(runs.c.wake_at, runs.c.created_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        statement = (
            sa.update(runs)
            .where(runs.c.id == candidate.scalar_subquery())
            .values(
                status="running",
                lease_owner=worker,
                lease_expires_at=now + lease_s,
                fencing_token=runs.c.fencing_token + 1,
                wake_at=None,
                updated_at=now,
                started_at=sa.func.coalesce(runs.c.started_at, now),
            )
            .returning(runs.c.id, runs.c.fencing_token)
        )
        with self.write() as conn:
            row = conn.execute(statement).first()
        return Claim(row.id, int(row.fencing_token), worker) if row else None

    def next_due_in(self) -> float:
        """Seconds until the earliest timer that can make a run claimable without
        anyone writing (database clock): a waiting run's ``wake_at``, a lease running
        out (its worker died), a schedule's next occurrence or its firing lease
        running out. ``inf`` when there is none; at most 0 when one is due already.
        Work someone writes (a run submitted, an approval decided) is announced
        instead (`gateway.store.dialect.Dialect.announce`)."""
        now = self.now
        lease, wake = runs.c.lease_expires_at, runs.c.wake_at
        run_due = sa.case(
            (lease.is_(None), sa.func.coalesce(wake, now)),
            (sa.or_(wake.is_(None), lease > wake), lease),
            else_=wake,
        )
        fire, fire_lease = schedules.c.next_fire_at, schedules.c.lease_expires_at
        schedule_due = sa.case(
            (sa.and_(fire_lease.is_not(None), fire_lease > fire), fire_lease), else_=fire
        )
        query = sa.select(
            sa.select(sa.func.min(run_due)).where(runs.c.status.in_(ACTIVE)).scalar_subquery(),
            sa.select(sa.func.min(schedule_due))
            .where(schedules.c.enabled.is_(True))
            .scalar_subquery(),
            now,
        )
        with self.engine.connect() as conn:
            run_at, schedule_at, clock = conn.execute(query).one()
        due = [float(t) for t in (run_at, schedule_at) if t is not None]
        return min(due) - float(clock) if due else math.inf

    def renew(self, claim: Claim, lease_s: float) -> bool | None:
        """Extends the lease; ``None`` when it was lost, else whether cancel was asked."""
        with self.write() as conn:
            row = conn.execute(
                sa.update(runs)
                .where(runs.c.id == claim.run_id, runs.c.fencing_token == claim.token)
                .values(lease_expires_at=self.now + lease_s)
                .returning(runs.c.cancel_requested)
            ).first()
        return None if row is None else bool(row.cancel_requested)

    # --- reading ----------------------------------------------------------------------

    def load(self, run_id: str) -> Loaded:
        """The run, its steps and the database clock, read together by the worker that
        just claimed the run (one connection, one trip to a worker thread)."""
        with self.engine.connect() as conn:
            return Loaded(
                run=self.run_row(run_id, conn),
                steps=list(conn.execute(sa.select(run_steps).where(run_steps.c.run_id == run_id))),
                clock=float(conn.execute(sa.select(self.now)).scalar_one()),
            )

    def run_row(self, run_id: str, conn: Connection | None = None) -> Any:
        query = sa.select(runs).where(runs.c.id == run_id)
        if conn is not None:
            return conn.execute(query).first()
        with self.engine.connect() as own:
            return own.execute(query).first()

    def step_rows(self, run_id: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(run_steps).where(run_steps.c.run_id == run_id)))

    def attempt_rows(self, run_id: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(step_attempts)
                    .where(step_attempts.c.run_id == run_id)
                    .order_by(step_attempts.c.started_at)
                )
            )

    def step_due(self, claim: Claim, step_id: str) -> bool:
        """Whether the step's ``wake_at`` has come, on the database clock."""
        with self.engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.select(run_steps.c.wake_at <= self.now).where(
                        run_steps.c.run_id == claim.run_id, run_steps.c.step_id == step_id
                    )
                ).scalar()
            )

    def deadline_passed(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.select(
                        sa.and_(runs.c.deadline_at.is_not(None), runs.c.deadline_at <= self.now)
                    ).where(runs.c.id == run_id)
                ).scalar()
            )


def _approval_decided() -> Any:
    """A waiting step's approval is no longer pending (approved, denied or expired):
    what wakes a run waiting for one, whichever process decided it. A run that waits
    thus holds no lease and writes nothing until something happens."""
    return (
        sa.exists()
        .where(
            run_steps.c.run_id == runs.c.id,
            run_steps.c.status == StepStatus.WAITING,
            run_steps.c.approval_id == approvals.c.id,
            approvals.c.status != "pending",
        )
        .correlate(runs)
    )


def _review_decided() -> Any:
    """The approval a run's plan review waits for is no longer pending: wakes a run
    that waits before any step (`gateway.executor.review`)."""
    return (
        sa.exists()
        .where(
            runs.c.review_status == "pending",
            approvals.c.id == runs.c.review_approval_id,
            approvals.c.status != "pending",
        )
        .correlate(runs)
    )
