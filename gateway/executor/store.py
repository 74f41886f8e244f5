"""The run store: runs, steps and attempts in SQL, with leases and fencing tokens.

Every time here is the **database clock** (`db_now`): a worker's own clock never
decides whether a lease expired or a timer fired, so workers on machines whose clocks
disagree still agree on who owns a run.

Ownership protocol (DESIGN §8):

- `claim` picks one runnable run (pending; running with an expired lease; waiting
  whose ``wake_at`` has come), bumps its ``fencing_token`` and leases it, in one
  statement: PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once
  without blocking each other; SQLite has a single writer (``BEGIN IMMEDIATE``).
- `renew` extends the lease while the token is current.
- Every other write runs in `guarded`, whose first statement touches the run row
  ``WHERE fencing_token = :mine``: a worker that lost its lease (paused past expiry,
  partitioned) finds zero rows, gets `LeaseLost` and writes nothing. On PostgreSQL the
  row lock taken by that statement also orders the write against a concurrent claim.

Invariant that makes takeover harmless: a step's ``succeeded`` row is written only by
the holder of the current token, and a step that is ``succeeded`` is never started
again; an attempt started by a dead worker is marked ``abandoned`` and the step runs
again with the same idempotency key, which the tool uses to apply its effect once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event

from gateway.executor.errors import LeaseLost
from gateway.store import create_engine, exclusive_transaction
from gateway.store.tables import run_steps, runs, step_attempts

# The writer lock key for SQLite's BEGIN IMMEDIATE path (unused on PostgreSQL, where
# row locks do the work; ASCII "agwruns_").
RUNS_LOCK_KEY = 0x61677772756E735F

ACTIVE = ("pending", "running", "waiting")
FINISHED = ("succeeded", "failed", "cancelled")


def db_now(engine_or_dialect: Engine | str) -> sa.ColumnElement[float]:
    """The database's current time in epoch seconds, as an SQL expression."""
    name = (
        engine_or_dialect if isinstance(engine_or_dialect, str) else engine_or_dialect.dialect.name
    )
    if name == "sqlite":
        # julianday('now') has millisecond resolution; 2440587.5 is the Unix epoch.
        text = "((julianday('now') - 2440587.5) * 86400.0)"
    else:
        text = "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)"
    return sa.literal_column(text, type_=sa.Double())


@dataclass(frozen=True)
class Claim:
    run_id: str
    token: int
    worker: str


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.now = db_now(engine)
        # Progress writes (claims, attempts, step results) are committed without
        # waiting for the disk: a killed process loses nothing (the commit is in the
        # database's memory and WAL), and what a power loss or database crash could
        # lose is only progress, which is redone with the same idempotency keys (the
        # tool applies the effect once) — never a run a client was told exists, nor
        # an audit entry. docs/workflows.md, "Durability".
        self._relaxed = _relaxed_sqlite(engine) if self.sqlite else engine

    # --- transactions ----------------------------------------------------------------

    @contextmanager
    def write(self, *, durable: bool = False) -> Iterator[Connection]:
        """A write transaction: SQLite takes its write lock up front (a read that later
        upgrades could fail at once with "database is locked"); PostgreSQL plain.
        ``durable``: the commit is on disk before this returns (new runs, cancels,
        schedules); otherwise it may trail by a few milliseconds (see above)."""
        if self.sqlite:
            with exclusive_transaction(
                self.engine if durable else self._relaxed, RUNS_LOCK_KEY
            ) as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                if not durable:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn

    def close(self) -> None:
        if self._relaxed is not self.engine:
            self._relaxed.dispose()

    @contextmanager
    def guarded(self, claim: Claim) -> Iterator[Connection]:
        """A write transaction that proceeds only while ``claim.token`` is current."""
        with self.write() as conn:
            touched = conn.execute(
                sa.update(runs)
                .where(runs.c.id == claim.run_id, runs.c.fencing_token == claim.token)
                .values(updated_at=self.now)
            ).rowcount
            if touched != 1:
                raise LeaseLost(
                    f"run {claim.run_id}: fencing token {claim.token} is no longer current"
                )
            yield conn

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
                sa.or_(runs.c.wake_at.is_(None), runs.c.wake_at <= now),
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

    def release(self, claim: Claim, wake_in_s: float | None = None) -> None:
        """Gives the run up while it waits, holding no lease: claimable again at the
        earliest ``wake_at`` of its waiting steps, or ``wake_in_s`` from now if sooner
        (both on the database clock)."""
        earliest = (
            sa.select(sa.func.min(run_steps.c.wake_at))
            .where(run_steps.c.run_id == claim.run_id, run_steps.c.status == "waiting")
            .scalar_subquery()
        )
        wake_at: Any = sa.func.coalesce(earliest, self.now + 365 * 86400.0)
        if wake_in_s is not None:
            soon = self.now + max(0.0, wake_in_s)
            wake_at = sa.case((wake_at > soon, soon), else_=wake_at)
        with self.guarded(claim) as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == claim.run_id)
                .values(status="waiting", lease_owner=None, lease_expires_at=None, wake_at=wake_at)
            )

    # --- reading ----------------------------------------------------------------------

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

    # --- step writes (all guarded) ------------------------------------------------------

    def begin_attempt(
        self, claim: Claim, step_id: str, purpose: str, request_id: str, idempotency_key: str
    ) -> tuple[int, int, int]:
        """Records an attempt as started. Returns ``(attempt, tool_calls, max_tool_calls)``
        with the run's tool-call count after this one; an attempt a dead worker left
        ``running`` is marked ``abandoned`` first."""
        with self.guarded(claim) as conn:
            conn.execute(
                sa.update(step_attempts)
                .where(
                    step_attempts.c.run_id == claim.run_id,
                    step_attempts.c.step_id == step_id,
                    step_attempts.c.purpose == purpose,
                    step_attempts.c.status == "running",
                )
                .values(status="abandoned", finished_at=self.now)
            )
            last = conn.execute(
                sa.select(sa.func.max(step_attempts.c.attempt)).where(
                    step_attempts.c.run_id == claim.run_id,
                    step_attempts.c.step_id == step_id,
                    step_attempts.c.purpose == purpose,
                )
            ).scalar()
            attempt = int(last or 0) + 1
            conn.execute(
                sa.insert(step_attempts).values(
                    run_id=claim.run_id,
                    step_id=step_id,
                    purpose=purpose,
                    attempt=attempt,
                    request_id=request_id,
                    idempotency_key=idempotency_key,
                    worker=claim.worker,
                    fencing_token=claim.token,
                    status="running",
                    started_at=self.now,
                )
            )
            counts = conn.execute(
                sa.update(runs)
                .where(runs.c.id == claim.run_id)
                .values(tool_calls=runs.c.tool_calls + 1)
                .returning(runs.c.tool_calls, runs.c.max_tool_calls)
            ).one()
            if purpose == "step":
                conn.execute(
                    _step(claim.run_id, step_id).values(
                        status="running",
                        attempts=attempt,
                        started_at=sa.func.coalesce(run_steps.c.started_at, self.now),
                        wake_at=None,
                    )
                )
        return attempt, int(counts.tool_calls), int(counts.max_tool_calls)

    def finish_attempt(
        self,
        claim: Claim,
        step_id: str,
        purpose: str,
        attempt: int,
        status: str,
        error: dict[str, Any] | None,
        step_values: dict[str, Any],
        wake_in_s: float | None = None,
    ) -> float | None:
        """Ends an attempt and updates its step in one transaction. ``step_values`` are
        the step's new columns; ``wake_in_s`` sets its ``wake_at`` (retry backoff),
        which is returned."""
        with self.guarded(claim) as conn:
            conn.execute(
                sa.update(step_attempts)
                .where(
                    step_attempts.c.run_id == claim.run_id,
                    step_attempts.c.step_id == step_id,
                    step_attempts.c.purpose == purpose,
                    step_attempts.c.attempt == attempt,
                )
                .values(status=status, finished_at=self.now, error=error)
            )
            return self._update_step(conn, claim, step_id, step_values, wake_in_s)

    def update_step(
        self,
        claim: Claim,
        step_id: str,
        values: dict[str, Any],
        wake_in_s: float | None = None,
    ) -> float | None:
        """Updates one step; returns its ``wake_at`` when ``wake_in_s`` was given."""
        with self.guarded(claim) as conn:
            return self._update_step(conn, claim, step_id, values, wake_in_s)

    def _update_step(
        self,
        conn: Connection,
        claim: Claim,
        step_id: str,
        values: dict[str, Any],
        wake_in_s: float | None,
    ) -> float | None:
        values = dict(values)
        if values.get("status") in ("succeeded", "failed", "skipped", "cancelled"):
            values.setdefault("finished_at", self.now)
        if wake_in_s is not None:
            values["wake_at"] = self.now + wake_in_s
        if not values:
            return None
        row = conn.execute(
            _step(claim.run_id, step_id).values(**values).returning(run_steps.c.wake_at)
        ).first()
        return float(row.wake_at) if row and row.wake_at is not None else None

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

    def finish_run(self, claim: Claim, status: str, error: dict[str, Any] | None) -> None:
        with self.guarded(claim) as conn:
            conn.execute(
                sa.update(run_steps)
                .where(
                    run_steps.c.run_id == claim.run_id,
                    run_steps.c.status.in_(("pending", "running", "waiting")),
                )
                .values(status="cancelled", finished_at=self.now)
            )
            conn.execute(
                sa.update(step_attempts)
                .where(
                    step_attempts.c.run_id == claim.run_id,
                    step_attempts.c.status == "running",
                )
                .values(status="cancelled", finished_at=self.now)
            )
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == claim.run_id)
                .values(
                    status=status,
                    error=error,
                    finished_at=self.now,
                    lease_owner=None,
                    lease_expires_at=None,
                    wake_at=None,
                )
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


def _relaxed_sqlite(engine: Engine) -> Engine:
    """A second engine on the same SQLite file whose commits do not fsync the WAL
    (``synchronous=NORMAL``: durable across process crashes, not power loss)."""
    relaxed = create_engine(engine.url.render_as_string(hide_password=False))

    @event.listens_for(relaxed, "connect")
    def _normal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return relaxed


def _step(run_id: str, step_id: str) -> sa.Update:
    return sa.update(run_steps).where(run_steps.c.run_id == run_id, run_steps.c.step_id == step_id)
