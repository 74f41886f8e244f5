"""The hot progress writes as one statement: one round trip, not eight.

A step's start (with the results it carries, `StepFinish`) is, on SQLite, a handful of
statements in one transaction, which cost microseconds each in process. Where each
statement is a round trip to the server (PostgreSQL: `Dialect.one_statement_writes`),
and BEGIN and COMMIT are two more, the same write is one ``WITH`` statement of
data-modifying parts, run on its own (autocommit: a single statement is its own
transaction, all or nothing):

- ``fence`` updates the run row only while the worker's token is current, and
  returns the tool-call count (as the fence of `gateway.executor.progress` does);
- every other part writes only ``WHERE EXISTS (SELECT 1 FROM fence)``: a stale token
  writes nothing at all;
- the fence is the first lock taken on the run row, and the run row comes before its
  steps' rows, as in every other write of the executor and in `request_cancel`.

Only the fast path comes here: a step whose last attempt is known (no dead worker's
attempt to abandon) and results for other steps than the one starting. Everything
else goes through `gateway.executor.progress` as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa

from gateway.executor.errors import LeaseLost
from gateway.executor.step_state import FINAL, StepStatus
from gateway.executor.store import Claim, RunStore, StepFinish
from gateway.store import Dialect
from gateway.store.tables import run_steps, runs, step_attempts

# A finish's shape: the step columns it sets, and whether it sets ``finished_at``.
Shape = tuple[tuple[str, ...], bool]


def applies(store: RunStore, step_id: str | None, finishes: Sequence[StepFinish]) -> bool:
    """Whether the one-statement form can do this write: a database that takes writes
    as one statement (`Dialect.one_statement_writes`), and no step row written twice (a
    statement cannot update one row in two of its parts)."""
    if not store.dialect.one_statement_writes:
        return False
    steps = [f.step_id for f in finishes] + ([step_id] if step_id else [])
    return len(steps) == len(set(steps))


def begin_attempt(
    store: RunStore,
    claim: Claim,
    step_id: str,
    purpose: str,
    attempt: int,
    request_id: str,
    idempotency_key: str,
    finishes: Sequence[StepFinish],
) -> Any:
    """Inserts attempt ``attempt`` (started, counted), starts the step and writes
    ``finishes``; returns ``tool_calls`` and ``max_tool_calls``. `LeaseLost` when the
    token is stale."""
    statement = _statement(store.dialect, True, purpose == "step", _shapes(finishes))
    parameters = {
        "p_step": step_id,
        "p_purpose": purpose,
        "p_attempt": attempt,
        "p_request_id": request_id,
        "p_key": idempotency_key,
        "p_worker": claim.worker,
    }
    return _execute(store, claim, statement, parameters, finishes)


def record(store: RunStore, claim: Claim, finishes: Sequence[StepFinish]) -> None:
    """Writes ``finishes`` only."""
    statement = _statement(store.dialect, False, False, _shapes(finishes))
    _execute(store, claim, statement, {}, finishes)


def _execute(
    store: RunStore,
    claim: Claim,
    statement: sa.Select[Any],
    parameters: dict[str, Any],
    finishes: Sequence[StepFinish],
) -> Any:
    parameters = {**parameters, "p_run": claim.run_id, "p_token": claim.token}
    for index, finish in enumerate(finishes):
        prefix = f"f{index}_"
        parameters.update(
            {
                prefix + "step": finish.step_id,
                prefix + "purpose": finish.purpose,
                prefix + "attempt": finish.attempt,
                prefix + "status": finish.status,
                prefix + "error": finish.error,
            }
        )
        for name, value in finish.step_values.items():
            parameters[f"{prefix}v_{name}"] = value
    with store.autocommit() as conn:
        row = conn.execute(statement, parameters).first()
    if row is None:
        raise LeaseLost(f"run {claim.run_id}: fencing token {claim.token} is no longer current")
    return row


def _shapes(finishes: Sequence[StepFinish]) -> tuple[Shape, ...]:
    return tuple(
        (
            tuple(sorted(f.step_values)),
            f.step_values.get("status") in FINAL and "finished_at" not in f.step_values,
        )
        for f in finishes
    )


@cache
def _statement(
    dialect: Dialect, count_call: bool, start_step: bool, shapes: tuple[Shape, ...]
) -> sa.Select[Any]:
    """The statement for one shape of write, built once (few shapes occur)."""
    now = dialect.now()
    run = sa.bindparam("p_run", type_=sa.Text())
    values: dict[str, Any] = {"updated_at": now}
    if count_call:
        values["tool_calls"] = runs.c.tool_calls + 1
    fence = (
        sa.update(runs)
        .where(runs.c.id == run, runs.c.fencing_token == sa.bindparam("p_token"))
        .values(values)
        .returning(runs.c.tool_calls, runs.c.max_tool_calls)
        .cte("fence")
    )
    fenced = sa.exists(sa.select(sa.literal(1)).select_from(fence))
    parts: list[Any] = []
    for index, (names, finished) in enumerate(shapes):
        prefix = f"f{index}_"
        step = sa.bindparam(prefix + "step", type_=sa.Text())
        ended = (
            sa.update(step_attempts)
            .where(
                step_attempts.c.run_id == run,
                step_attempts.c.step_id == step,
                step_attempts.c.purpose == sa.bindparam(prefix + "purpose"),
                step_attempts.c.attempt == sa.bindparam(prefix + "attempt"),
                fenced,
            )
            .values(
                status=sa.bindparam(prefix + "status"),
                finished_at=now,
                error=sa.bindparam(prefix + "error", type_=step_attempts.c.error.type),
            )
        )
        columns: dict[str, Any] = {
            name: sa.bindparam(f"{prefix}v_{name}", type_=run_steps.c[name].type) for name in names
        }
        if finished:
            columns["finished_at"] = now
        parts.append(ended.cte(prefix + "attempt"))
        if columns:
            updated = sa.update(run_steps).where(
                run_steps.c.run_id == run, run_steps.c.step_id == step, fenced
            )
            parts.append(updated.values(columns).cte(prefix + "step"))
    if count_call:
        step = sa.bindparam("p_step", type_=sa.Text())
        attempt = sa.bindparam("p_attempt", type_=sa.Integer())
        row = sa.select(
            run,
            step,
            sa.bindparam("p_purpose", type_=sa.Text()),
            attempt,
            sa.bindparam("p_request_id", type_=sa.Text()),
            sa.bindparam("p_key", type_=sa.Text()),
            sa.bindparam("p_worker", type_=sa.Text()),
            sa.bindparam("p_token", type_=sa.BigInteger()),
            sa.literal("running"),
            now,
        ).select_from(fence)
        inserted = sa.insert(step_attempts).from_select(
            [
                "run_id",
                "step_id",
                "purpose",
                "attempt",
                "request_id",
                "idempotency_key",
                "worker",
                "fencing_token",
                "status",
                "started_at",
            ],
            row,
        )
        parts.append(inserted.cte("attempt"))
        if start_step:
            started = (
                sa.update(run_steps)
                .where(run_steps.c.run_id == run, run_steps.c.step_id == step, fenced)
                .values(
                    status=StepStatus.RUNNING,
                    attempts=attempt,
                    started_at=sa.func.coalesce(run_steps.c.started_at, now),
                    wake_at=None,
                )
            )
            parts.append(started.cte("started"))
    return sa.select(fence.c.tool_calls, fence.c.max_tool_calls).add_cte(*parts)
