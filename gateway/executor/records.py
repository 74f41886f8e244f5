"""Creating, reading, listing and cancelling runs; how a run looks to its readers.

The worker's writes (leases, attempts) are in `store`; this module holds what the
surfaces need. A view never shows more than was stored redacted: arguments are
stored as the policy's ``redact`` obligation left them, and outputs are redacted on
the way out by the same pointers where they name ``/output/…``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.executor.errors import IdempotencyConflict, RunFinished, RunNotFound
from gateway.executor.plan import Plan
from gateway.executor.step_state import DONE, OPEN, StepStatus
from gateway.executor.store import ACTIVE, FINISHED, RunStore
from gateway.redaction import redact
from gateway.store.tables import run_steps, runs, step_attempts
from gateway.timestamps import format_epoch
from gateway.types import Actor, Principal

# The actor the executor adds in front of the submitter's chain: policies see that a
# step runs through the executor, on behalf of whoever submitted the plan.
EXECUTOR_ACTOR = Actor(sub="gateway:executor")


def new_run_id() -> str:
    return "run_" + secrets.token_hex(10)


def principal_to_json(principal: Principal) -> dict[str, Any]:
    return {**principal.to_policy_subject(), "token_id": principal.token_id}


def principal_from_json(data: dict[str, Any]) -> Principal:
    return Principal(
        sub=data["sub"],
        iss=data["iss"],
        roles=tuple(data.get("roles", ())),
        scopes=tuple(data.get("scopes", ())),
        tenant=data.get("tenant"),
        act_chain=tuple(Actor(a["sub"], a.get("iss")) for a in data.get("act_chain", ())),
        claims=dict(data.get("claims", {})),
        token_id=data.get("token_id"),
    )


def executor_principal(submitter: Principal) -> Principal:
    """The submitter, acting through the executor (the executor is the current actor)."""
    return Principal(
        sub=submitter.sub,
        iss=submitter.iss,
        roles=submitter.roles,
        scopes=submitter.scopes,
        tenant=submitter.tenant,
        act_chain=(EXECUTOR_ACTOR, *submitter.act_chain),
        claims=submitter.claims,
        token_id=submitter.token_id,
    )


# --- creating ------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitsFor:
    """A new run's step that starts waiting for an existing approval, until then."""

    step_id: str
    approval_id: str
    wake_in_s: float


def find_existing(store: RunStore, owner: Principal, key: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(runs).where(runs.c.owner == owner.identity.key, runs.c.idempotency_key == key)
        ).first()


def check_same_submission(row: Any, plan_hash: str, inputs: dict[str, Any]) -> None:
    """A repeated key must mean the same plan and inputs; anything else is a conflict."""
    if row.plan_hash != plan_hash or row.inputs != inputs:
        raise IdempotencyConflict(
            f"idempotency key already used for run {row.id} with a different plan or inputs",
            details={"run_id": row.id},
        )


def insert_run(
    store: RunStore,
    *,
    run_id: str,
    plan: Plan,
    inputs: dict[str, Any],
    principal: Principal,
    idempotency_key: str,
    request_id: str | None,
    provenance: dict[str, Any],
    deadline_s: float,
    max_tool_calls: int,
    schedule_id: str | None = None,
    review_approval_id: str | None = None,
    waits_for: WaitsFor | None = None,
) -> tuple[str, bool]:
    """Inserts a pending run and its steps. Returns ``(run_id, created)``: with a key
    already used by this submitter, the existing run's id and ``False``. A run whose
    plan waits for a review (``review_approval_id``) is created waiting, claimable
    when the approval is decided or expires (`RunStore.claim`), or at its deadline.

    ``waits_for``: the run starts released, its one step waiting for an approval that
    already exists (a tool call held for approval, `gateway.executor.held_calls`), so
    nothing is decided or called before the approval is decided."""
    now = store.now
    review = {}
    if review_approval_id is not None:
        review = {
            "status": "waiting",
            "review_status": "pending",
            "review_approval_id": review_approval_id,
            "wake_at": now + deadline_s,
        }
    try:
        with store.write(durable=True) as conn:
            store.dialect.announce(conn)  # idle workers of other processes look at once
            conn.execute(
                sa.insert(runs).values(
                    id=run_id,
                    status=review.pop("status", "pending"),
                    plan=plan.to_json(),
                    plan_hash=plan.plan_hash,
                    inputs=inputs,
                    principal=principal_to_json(principal),
                    submitted_by=principal.sub,
                    owner=principal.identity.key,
                    idempotency_key=idempotency_key,
                    request_id=request_id,
                    provenance=provenance,
                    schedule_id=schedule_id,
                    created_at=now,
                    updated_at=now,
                    deadline_at=now + deadline_s,
                    fencing_token=0,
                    cancel_requested=False,
                    tool_calls=0,
                    max_tool_calls=max_tool_calls,
                    **review,
                )
            )
            conn.execute(
                sa.insert(run_steps),
                [
                    {
                        "run_id": run_id,
                        "step_id": step.id,
                        "kind": step.kind,
                        "status": StepStatus.PENDING,
                        "attempts": 0,
                        "failures": 0,
                        "idempotency_key": f"{run_id}:{step.id}",
                    }
                    for step in plan.steps
                ],
            )
            if waits_for is not None:
                wake_at = now + waits_for.wake_in_s
                conn.execute(
                    sa.update(run_steps)
                    .where(run_steps.c.run_id == run_id, run_steps.c.step_id == waits_for.step_id)
                    .values(
                        status=StepStatus.WAITING,
                        approval_id=waits_for.approval_id,
                        wake_at=wake_at,
                    )
                )
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == run_id)
                    .values(status="waiting", wake_at=wake_at)
                )
    except sa.exc.IntegrityError:
        # Lost a race with the same submission: the unique key says which run it is.
        existing = find_existing(store, principal, idempotency_key)
        if existing is None:
            raise
        check_same_submission(existing, plan.plan_hash, inputs)
        return existing.id, False
    return run_id, True


# --- reading -----------------------------------------------------------------------


def load_run(store: RunStore, run_id: str, viewer: Principal | None) -> Any:
    """The run row; `RunNotFound` when it does not exist or ``viewer`` did not submit
    it (``None``: a reader of every run: the operator with the config file, or a holder
    of ``executor.viewer_roles``)."""
    row = store.run_row(run_id)
    if row is None or (viewer is not None and not _owns(row, viewer)):
        raise RunNotFound(f"no run {run_id!r}", details={"run_id": run_id})
    return row


def _owns(row: Any, viewer: Principal) -> bool:
    return bool(row.owner == viewer.identity.key)


def list_runs(
    store: RunStore,
    viewer: Principal | None,
    *,
    status: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    query = sa.select(runs).order_by(runs.c.created_at.desc()).limit(max(1, min(limit, 500)))
    if viewer is not None:
        query = query.where(runs.c.owner == viewer.identity.key)
    if status:
        query = query.where(runs.c.status == status)
    with store.engine.connect() as conn:
        rows = list(conn.execute(query))
        counts = _step_counts(conn, [r.id for r in rows])
    return [{**summary(r), **counts.get(r.id, _NO_STEPS)} for r in rows]


# The console shows steps that completed their work (`DONE`) as "done / total".
_NO_STEPS = {"steps_done": 0, "steps_total": 0}


def _step_counts(conn: sa.Connection, run_ids: list[str]) -> dict[str, dict[str, int]]:
    if not run_ids:
        return {}
    done = sa.func.sum(sa.case((run_steps.c.status.in_(DONE), 1), else_=0))
    query = (
        sa.select(run_steps.c.run_id, sa.func.count(), done)
        .where(run_steps.c.run_id.in_(run_ids))
        .group_by(run_steps.c.run_id)
    )
    return {
        run_id: {"steps_done": int(finished or 0), "steps_total": int(total)}
        for run_id, total, finished in conn.execute(query)
    }


def summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "name": (row.plan or {}).get("name"),
        "plan_hash": row.plan_hash,
        "submitted_by": row.submitted_by,
        "schedule_id": row.schedule_id,
        "created_at": format_epoch(row.created_at),
        "started_at": format_epoch(row.started_at),
        "finished_at": format_epoch(row.finished_at),
        "error": row.error,
        "workflow": (row.provenance or {}).get("workflow"),
        "review": {"status": row.review_status, "approval_id": row.review_approval_id}
        if row.review_approval_id
        else None,
    }


def run_view(store: RunStore, row: Any) -> dict[str, Any]:
    """The whole run: steps with their attempts, redacted outputs, timing, provenance."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for attempt in store.attempt_rows(row.id):
        attempts.setdefault(attempt.step_id, []).append(
            {
                "purpose": attempt.purpose,
                "attempt": attempt.attempt,
                "status": attempt.status,
                "request_id": attempt.request_id,
                "worker": attempt.worker,
                "started_at": format_epoch(attempt.started_at),
                "finished_at": format_epoch(attempt.finished_at),
                "error": attempt.error,
            }
        )
    order = {step["id"]: index for index, step in enumerate(row.plan["steps"])}
    tools = {step["id"]: step.get("tool") for step in row.plan["steps"]}
    steps = []
    for step in sorted(store.step_rows(row.id), key=lambda s: order.get(s.step_id, 0)):
        output = shown_output(step.output, step.redact)
        steps.append(
            {
                "id": step.step_id,
                "kind": step.kind,
                "tool": tools.get(step.step_id),
                "status": step.status,
                "attempts": attempts.get(step.step_id, []),
                "idempotency_key": step.idempotency_key,
                "arguments": step.arguments,
                "output": output,
                "error": step.error,
                "decision": step.decision,
                "approval_id": step.approval_id,
                "wake_at": format_epoch(step.wake_at)
                if step.status == StepStatus.WAITING
                else None,
                "started_at": format_epoch(step.started_at),
                "finished_at": format_epoch(step.finished_at),
                "compensation": step.compensation,
                "compensation_error": step.compensation_error,
            }
        )
    return {
        **summary(row),
        "steps_done": sum(1 for s in steps if s["status"] in DONE),
        "steps_total": len(steps),
        "inputs": shown_inputs(row),
        "deadline_at": format_epoch(row.deadline_at),
        "tool_calls": row.tool_calls,
        "max_tool_calls": row.max_tool_calls,
        "cancel_requested": bool(row.cancel_requested),
        "provenance": row.provenance,
        "plan": row.plan,
        "steps": steps,
    }


def shown_output(output: Any, pointers: list[str] | None) -> Any:
    """A step's output as its readers may see it: redacted by the decision's pointers
    that name ``/output/…``."""
    named = [p.removeprefix("/output") for p in pointers or [] if p.startswith("/output/")]
    if output is None or not named:
        return output
    return redact({"o": output}, ["/o" + p for p in named])["o"]


def shown_inputs(row: Any) -> Any:
    """A run's inputs as its readers may see them: a held call's arguments (its run's
    inputs, `gateway.executor.held_calls`) as redacted by the decision that held it."""
    pointers = (row.provenance or {}).get("inputs_redact") or []
    if not pointers or row.inputs is None:
        return row.inputs
    return redact(row.inputs, list(pointers))


# --- cancelling ----------------------------------------------------------------------


def request_cancel(store: RunStore, run_id: str) -> str:
    """Asks for a run to stop. A run no worker holds is cancelled here and now (its
    token bumped, so a worker that still thinks it owns it cannot write); a leased one
    is cancelled by its worker at the next heartbeat. Returns the status afterwards."""
    now = store.now
    with store.write(durable=True) as conn:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(f"no run {run_id!r}", details={"run_id": run_id})
        if row.status in FINISHED:
            raise RunFinished(f"run {run_id} already {row.status}", details={"status": row.status})
        leased = conn.execute(
            sa.select(
                sa.and_(runs.c.lease_expires_at.is_not(None), runs.c.lease_expires_at >= now)
            ).where(runs.c.id == run_id)
        ).scalar()
        if leased:
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(cancel_requested=True))
            return str(row.status)
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status.in_(ACTIVE))
            .values(
                status="cancelled",
                cancel_requested=True,
                fencing_token=runs.c.fencing_token + 1,
                finished_at=now,
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
                wake_at=None,
                error={"code": "cancelled", "message": "cancelled on request"},
            )
        )
        conn.execute(
            sa.update(run_steps)
            .where(run_steps.c.run_id == run_id, run_steps.c.status.in_(OPEN))
            .values(status=StepStatus.CANCELLED, finished_at=now)
        )
        conn.execute(
            sa.update(step_attempts)
            .where(step_attempts.c.run_id == run_id, step_attempts.c.status == "running")
            .values(status="cancelled", finished_at=now)
        )
    return "cancelled"
