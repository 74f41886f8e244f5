"""The fenced progress writes of a claimed run: attempts, step results, release, finish.

Each function is one transaction whose first statement is the fence (the run row
updated ``WHERE fencing_token = :mine``): nothing is written once another worker holds
the run. Each also takes ``finishes``: step results the runner has not written yet
(`StepFinish`), which go first, in order, in the same transaction. A step that
succeeded is thereby recorded by the very transaction that starts the step after it,
so a chain of steps costs one transaction per step instead of two; the runner keeps
no result unwritten past its next write or its next wait (`gateway.executor.writer`).
Where the database sends each statement over the network (PostgreSQL,
`Dialect.one_statement_writes`), the hot two are one statement each
(`gateway.executor.progress_one_statement`).

The statements are built once per dialect (its `Dialect.now`) and executed with
parameters: building a SQLAlchemy statement costs several times more than running it
on SQLite, and these run a few times for every step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.executor import progress_one_statement
from gateway.executor.errors import LeaseLost
from gateway.executor.step_state import FINAL, OPEN, StepStatus
from gateway.executor.store import Claim, RunStore, StepFinish
from gateway.store import Dialect
from gateway.store.tables import run_steps, runs, step_attempts


@contextmanager
def fenced(
    store: RunStore, claim: Claim, finishes: Sequence[StepFinish] = ()
) -> Iterator[Connection]:
    """A write transaction that proceeds only while ``claim.token`` is current, with
    ``finishes`` written first."""
    with store.write() as conn:
        sql = _statements(store.dialect)
        _fence(conn, claim, sql.fence)
        _write_finishes(conn, store.dialect, claim, finishes)
        yield conn


def record(store: RunStore, claim: Claim, finishes: Sequence[StepFinish] = ()) -> None:
    """Writes ``finishes`` and nothing else (when no other write is coming soon)."""
    if finishes and progress_one_statement.applies(store, None, finishes):
        progress_one_statement.record(store, claim, finishes)
        return
    with fenced(store, claim, finishes):
        pass


def begin_attempt(
    store: RunStore,
    claim: Claim,
    step_id: str,
    purpose: str,
    request_id: str,
    idempotency_key: str,
    *,
    previous: int | None = None,
    finishes: Sequence[StepFinish] = (),
) -> tuple[int, int, int]:
    """Records an attempt as started and counts it as one of the run's tool calls.
    Returns ``(attempt, tool_calls, max_tool_calls)``, the count including this one.

    ``previous``: the number of the step's last attempt when the caller knows that
    none of its attempts is still marked running (it holds the run and read the step
    since). ``None``: looked up here, and an attempt a dead worker left ``running`` is
    marked ``abandoned`` first."""
    if previous is not None and progress_one_statement.applies(store, step_id, finishes):
        attempt = previous + 1
        counts = progress_one_statement.begin_attempt(
            store, claim, step_id, purpose, attempt, request_id, idempotency_key, finishes
        )
        return attempt, int(counts.tool_calls), int(counts.max_tool_calls)
    sql = _statements(store.dialect)
    with store.write() as conn:
        # The fence and the tool-call count in one statement.
        counts = _fence(conn, claim, sql.fence_and_count)
        _write_finishes(conn, store.dialect, claim, finishes)
        which = {"p_run": claim.run_id, "p_step": step_id, "p_purpose": purpose}
        if previous is None:
            conn.execute(sql.abandon, which)
            previous = conn.execute(sql.last_attempt, which).scalar()
        attempt = int(previous or 0) + 1
        conn.execute(
            sql.insert_attempt,
            {
                **which,
                "p_attempt": attempt,
                "p_request_id": request_id,
                "p_key": idempotency_key,
                "p_worker": claim.worker,
                "p_token": claim.token,
            },
        )
        if purpose == "step":
            conn.execute(sql.start_step, {**which, "p_attempt": attempt})
    return attempt, int(counts.tool_calls), int(counts.max_tool_calls)


def finish_attempt(
    store: RunStore,
    claim: Claim,
    finish: StepFinish,
    wake_in_s: float | None = None,
    *,
    finishes: Sequence[StepFinish] = (),
) -> float | None:
    """Ends an attempt and updates its step in one transaction; ``wake_in_s`` sets the
    step's ``wake_at`` (a retry backoff, an approval's lifetime), which is returned."""
    with fenced(store, claim, finishes) as conn:
        _end_attempt(conn, store.dialect, claim, finish)
        return _update_step(
            conn, store.dialect, claim, finish.step_id, finish.step_values, wake_in_s
        )


def update_step(
    store: RunStore,
    claim: Claim,
    step_id: str,
    values: dict[str, Any],
    wake_in_s: float | None = None,
    *,
    finishes: Sequence[StepFinish] = (),
) -> float | None:
    """Updates one step; returns its ``wake_at`` when ``wake_in_s`` was given."""
    with fenced(store, claim, finishes) as conn:
        return _update_step(conn, store.dialect, claim, step_id, values, wake_in_s)


def release(
    store: RunStore,
    claim: Claim,
    wake_in_s: float | None = None,
    *,
    finishes: Sequence[StepFinish] = (),
) -> None:
    """Gives the run up while it waits, holding no lease: claimable again at the
    earliest ``wake_at`` of its waiting steps, or ``wake_in_s`` from now if sooner
    (both on the database clock)."""
    earliest = (
        sa.select(sa.func.min(run_steps.c.wake_at))
        .where(run_steps.c.run_id == claim.run_id, run_steps.c.status == StepStatus.WAITING)
        .scalar_subquery()
    )
    wake_at: Any = sa.func.coalesce(earliest, store.now + 365 * 86400.0)
    if wake_in_s is not None:
        soon = store.now + max(0.0, wake_in_s)
        wake_at = sa.case((wake_at > soon, soon), else_=wake_at)
    with fenced(store, claim, finishes) as conn:
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == claim.run_id)
            .values(status="waiting", lease_owner=None, lease_expires_at=None, wake_at=wake_at)
        )


def approve_review(store: RunStore, claim: Claim, *, finishes: Sequence[StepFinish] = ()) -> None:
    """The plan's review approved: its steps may run (`gateway.executor.review`)."""
    with fenced(store, claim, finishes) as conn:
        conn.execute(
            sa.update(runs).where(runs.c.id == claim.run_id).values(review_status="approved")
        )


def finish_run(
    store: RunStore,
    claim: Claim,
    status: str,
    error: dict[str, Any] | None,
    *,
    finishes: Sequence[StepFinish] = (),
) -> None:
    """Ends the run: steps and attempts still open are cancelled, the lease dropped."""
    with fenced(store, claim, finishes) as conn:
        conn.execute(
            sa.update(run_steps)
            .where(
                run_steps.c.run_id == claim.run_id,
                run_steps.c.status.in_(OPEN),
            )
            .values(status=StepStatus.CANCELLED, finished_at=store.now)
        )
        conn.execute(
            sa.update(step_attempts)
            .where(step_attempts.c.run_id == claim.run_id, step_attempts.c.status == "running")
            .values(status="cancelled", finished_at=store.now)
        )
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == claim.run_id)
            .values(
                status=status,
                error=error,
                finished_at=store.now,
                lease_owner=None,
                lease_expires_at=None,
                wake_at=None,
            )
        )


# --- statements ----------------------------------------------------------------------


def _fence(conn: Connection, claim: Claim, statement: sa.Update) -> Any:
    row = conn.execute(statement, {"p_run": claim.run_id, "p_token": claim.token}).first()
    if row is None:
        raise LeaseLost(f"run {claim.run_id}: fencing token {claim.token} is no longer current")
    return row


def _write_finishes(
    conn: Connection, dialect: Dialect, claim: Claim, finishes: Sequence[StepFinish]
) -> None:
    for finish in finishes:
        _end_attempt(conn, dialect, claim, finish)
        _update_step(conn, dialect, claim, finish.step_id, finish.step_values, None)


def _end_attempt(conn: Connection, dialect: Dialect, claim: Claim, finish: StepFinish) -> None:
    conn.execute(
        _statements(dialect).end_attempt,
        {
            "p_run": claim.run_id,
            "p_step": finish.step_id,
            "p_purpose": finish.purpose,
            "p_attempt": finish.attempt,
            "p_status": finish.status,
            "p_error": finish.error,
        },
    )


def _update_step(
    conn: Connection,
    dialect: Dialect,
    claim: Claim,
    step_id: str,
    values: dict[str, Any],
    wake_in_s: float | None,
) -> float | None:
    if not values and wake_in_s is None:
        return None
    statement = _step_update(
        dialect,
        tuple(sorted(values)),
        finished=values.get("status") in FINAL and "finished_at" not in values,
        wakes=wake_in_s is not None,
    )
    parameters = {f"v_{name}": value for name, value in values.items()}
    parameters.update(p_run=claim.run_id, p_step=step_id, p_wake_in_s=wake_in_s)
    if wake_in_s is None:  # nothing to read back
        conn.execute(statement, parameters)
        return None
    row = conn.execute(statement, parameters).first()
    return float(row.wake_at) if row and row.wake_at is not None else None


class _Statements:
    """The statements of the hot path, for one dialect (its ``now``)."""

    def __init__(self, dialect: Dialect) -> None:
        now = dialect.now()
        run = sa.bindparam("p_run")
        of_run = (runs.c.id == run, runs.c.fencing_token == sa.bindparam("p_token"))
        counts = (runs.c.tool_calls, runs.c.max_tool_calls)
        self.fence = sa.update(runs).where(*of_run).values(updated_at=now).returning(*counts)
        self.fence_and_count = (
            sa.update(runs)
            .where(*of_run)
            .values(updated_at=now, tool_calls=runs.c.tool_calls + 1)
            .returning(*counts)
        )
        of_step = (
            step_attempts.c.run_id == run,
            step_attempts.c.step_id == sa.bindparam("p_step"),
            step_attempts.c.purpose == sa.bindparam("p_purpose"),
        )
        self.abandon = (
            sa.update(step_attempts)
            .where(*of_step, step_attempts.c.status == "running")
            .values(status="abandoned", finished_at=now)
        )
        self.last_attempt = sa.select(sa.func.max(step_attempts.c.attempt)).where(*of_step)
        self.insert_attempt = sa.insert(step_attempts).values(
            run_id=run,
            step_id=sa.bindparam("p_step"),
            purpose=sa.bindparam("p_purpose"),
            attempt=sa.bindparam("p_attempt"),
            request_id=sa.bindparam("p_request_id"),
            idempotency_key=sa.bindparam("p_key"),
            worker=sa.bindparam("p_worker"),
            fencing_token=sa.bindparam("p_token"),
            status="running",
            started_at=now,
        )
        self.end_attempt = (
            sa.update(step_attempts)
            .where(*of_step, step_attempts.c.attempt == sa.bindparam("p_attempt"))
            .values(
                status=sa.bindparam("p_status"),
                finished_at=now,
                error=sa.bindparam("p_error", type_=step_attempts.c.error.type),
            )
        )
        self.start_step = _step().values(
            status=StepStatus.RUNNING,
            attempts=sa.bindparam("p_attempt"),
            started_at=sa.func.coalesce(run_steps.c.started_at, now),
            wake_at=None,
        )


@cache
def _statements(dialect: Dialect) -> _Statements:
    return _Statements(dialect)


@cache
def _step_update(
    dialect: Dialect, names: tuple[str, ...], finished: bool, wakes: bool
) -> sa.Update:
    """UPDATE of one step setting ``names`` (parameters ``v_<name>``), ``finished_at``
    when it reaches a final status, and ``wake_at`` (returned) when it wakes later.
    Few shapes occur (success, retry, failure, waiting, …), each built once."""
    now = dialect.now()
    values: dict[str, Any] = {
        name: sa.bindparam(f"v_{name}", type_=run_steps.c[name].type) for name in names
    }
    if finished:
        values["finished_at"] = now
    if wakes:
        values["wake_at"] = now + sa.bindparam("p_wake_in_s", type_=sa.Double())
        return _step().values(values).returning(run_steps.c.wake_at)
    return _step().values(values)


def _step() -> sa.Update:
    return sa.update(run_steps).where(
        run_steps.c.run_id == sa.bindparam("p_run"), run_steps.c.step_id == sa.bindparam("p_step")
    )
