"""A tool call held for approval, executed by the executor once approved
(docs/decisions/0021): what an MCP task of a held call stands on.

When a task-capable client's ``tools/call`` is held (`gateway.approvals.gate`), the
call becomes a **one-step run**: a plan of one tool step, owned by the caller, whose
step starts *waiting* for the approval the pipeline just requested. Nothing new runs
it: the run is released (no lease, no writes) until the approval is decided, a worker
of any process claims it then (`RunStore.claim` wakes runs whose approval is no
longer pending), and the step calls the pipeline like every step, as the caller
through the executor. The pipeline finds the approval approved and executes the call
through its single-execution claim, recording the outcome on the approval; a retry of
the same call by the agent, or a second worker after a lost lease, gets that recorded
outcome, never a second execution. Leases, fencing, takeover after a crash and the
audit events of steps are the executor's, unchanged.

The arguments are the run's inputs (the step refers to them, so nothing in them is
read as a template), shown redacted by the holding decision's ``redact`` pointers.

`held_state` reads what a task reports: from the approval (decided? executed, with
which recorded outcome?) and the run (cancelled, failed before executing?).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from gateway.approvals.models import Approval, ApprovalStatus, ExecutionState
from gateway.executor import records
from gateway.executor.plan import Plan, parse_plan
from gateway.executor.records import WaitsFor
from gateway.executor.service import Executor
from gateway.operations import Operation
from gateway.types import Decision
from gateway.version import __version__

STEP_ID = "call"
# Attempts of the step. Only the first can execute the call (the approval's claim);
# the others read its recorded outcome: they are for a step that found the call
# executing for another request (a second task of the same call, the agent's retry),
# which answers at once, before the outcome is recorded.
ATTEMPTS = 3
# After the approval's own lifetime, how long the run may still take to execute.
EXECUTION_GRACE_S = 3600.0

TaskStatus = Literal["working", "completed", "failed", "cancelled"]


@dataclass(frozen=True)
class HeldState:
    """What a held call's task reports now."""

    status: TaskStatus
    message: str
    approval: Approval
    # The approval's recorded outcome once the call ran (``status``, ``request_id``,
    # ``result`` or ``error``): the task's result.
    recorded: dict[str, Any] | None = None
    # Why it did not run, for a failed task: ``code`` and ``message``.
    error: dict[str, Any] | None = None


def held_plan(tool: str, arguments: dict[str, Any]) -> Plan:
    """One tool step whose arguments are the run's inputs, each referred to by name
    (a JMESPath quoted identifier), so no value is ever read as a template."""
    references = {
        key: "${{ inputs.arguments." + json.dumps(key) + " }}" for key in sorted(arguments)
    }
    return parse_plan(
        {
            "name": f"held call to {tool}",
            "description": "a tool call held for approval, run once approved",
            "steps": [
                {
                    "id": STEP_ID,
                    "tool": tool,
                    "arguments": references,
                    "retry": {"max_attempts": ATTEMPTS, "backoff_s": 2.0},
                }
            ],
        }
    )


async def hold_as_run(
    executor: Executor,
    call: Operation,
    decision: Decision,
    approval: Approval,
    *,
    definition_hash: str,
    task_id: str,
    run_id: str,
) -> str:
    """Creates the run that executes ``call`` once ``approval`` is approved; its id.

    The call's attempt, its decision and the approval's request are already durable in
    the audit log (the pipeline and the approvals engine wrote them); the caller audits
    the task before this. Durable on return: any worker of any process may run it."""
    deps = executor.deps
    plan = held_plan(call.target, call.arguments)
    ttl = float(decision.obligations.approval_ttl_s or _default_ttl(executor))
    provenance = {
        "plan_hash": plan.plan_hash,
        "policy_engine": decision.engine,
        "policy_revision": decision.revision,
        "decision_id": decision.decision_id,
        "tools": {call.target: definition_hash},
        "gateway_version": __version__,
        "submitted_by": call.principal.to_audit(),
        "request_id": call.request_id,
        "transport": call.transport,
        "steps_need_approval": True,
        "held_call": {"task_id": task_id, "approval_id": approval.id},
        # The run's inputs hold the real arguments; its readers see them redacted.
        "inputs_redact": list(decision.obligations.redact),
    }
    run_id, _ = await anyio.to_thread.run_sync(
        lambda: records.insert_run(
            deps.store,
            run_id=run_id,
            plan=plan,
            inputs={"arguments": call.arguments},
            principal=call.principal,
            idempotency_key=f"held:{task_id}",
            request_id=call.request_id,
            provenance=provenance,
            deadline_s=min(deps.config.max_run_s, ttl + EXECUTION_GRACE_S),
            max_tool_calls=ATTEMPTS,
            waits_for=WaitsFor(STEP_ID, approval.id, wake_in_s=ttl),
        )
    )
    return run_id


def _default_ttl(executor: Executor) -> float:
    config = getattr(executor.deps.approvals, "config", None)
    return float(getattr(config, "default_ttl_s", 3600.0))


async def held_state(executor: Executor, run_id: str, approval_id: str) -> HeldState:
    """The task's status, from the approval and the run. Raises `ApprovalNotFound`
    (or `ApprovalsDisabled`) when the approval cannot be read."""
    approval = await executor.deps.approvals.get_fresh(approval_id)
    run = await anyio.to_thread.run_sync(executor.store.run_row, run_id)
    recorded = approval.outcome
    if approval.execution_state is ExecutionState.DONE and recorded:
        # It ran, once: for this task's run or for a retry of the same call.
        if recorded.get("erased"):
            message = (
                f"the call ran once (request {recorded.get('request_id')}); its outcome was erased"
            )
            error = {"code": "outcome_erased", "message": message}
            return HeldState("failed", message, approval, error=error)
        message = f"approved by {approval.decided_by}; the call ran once"
        return HeldState("completed", message, approval, recorded=recorded)
    if approval.status is ApprovalStatus.DENIED:
        why = approval.decision_reason or "no reason given"
        message = (
            f"{approval.decided_by} denied approval {approval.id}: {why}; the call to "
            f"{approval.tool} was not executed"
        )
        return HeldState("failed", message, approval, error=_error("approval_denied", message))
    if approval.status in (ApprovalStatus.EXPIRED, ApprovalStatus.CANCELLED):
        when = approval.decided_at or approval.expires_at
        message = (
            f"approval {approval.id} {approval.status.value} at {when} without a human "
            f"decision; the call to {approval.tool} was not executed"
        )
        return HeldState("failed", message, approval, error=_error("approval_expired", message))
    if run is None or run.status == "cancelled":
        message = f"cancelled on request; the call to {approval.tool} was not executed"
        return HeldState("cancelled", message, approval)
    if run.status in ("failed", "succeeded"):
        error = run.error or {"code": "run_failed", "message": "the run ended without executing"}
        message = f"the call to {approval.tool} was not executed: {error.get('message')}"
        return HeldState("failed", message, approval, error=_error(error.get("code"), message))
    if approval.status is ApprovalStatus.PENDING:
        message = (
            f"waiting for approval {approval.id} by {', '.join(approval.approvers)} "
            f"(expires {approval.expires_at}); the call runs once it is approved"
        )
        return HeldState("working", message, approval)
    message = f"approved by {approval.decided_by}; executing"
    return HeldState("working", message, approval)


def _error(code: Any, message: str) -> dict[str, Any]:
    return {"code": str(code or "failed"), "message": message}


async def cancel_held(executor: Executor, run_id: str, owner: Any) -> str:
    """Cancels the run of a held call (its owner's request); the run's status after.
    Raises `RunFinished` when it already finished (executed, failed or cancelled)."""
    return await executor.cancel(run_id, owner)


def ttl_s(approval: Approval, decision: Decision | None, executor: Executor) -> float:
    """How long a held call's task is kept: the approval's lifetime, time to execute
    it, and as long again to read the result."""
    ttl = decision.obligations.approval_ttl_s if decision is not None else None
    base = float(ttl or _default_ttl(executor))
    return math.ceil(2 * base + EXECUTION_GRACE_S)
