"""Approvals inside runs: approval gate steps, and tool steps whose call needs one.

Either way the run waits released (no lease, no worker, nothing written) until the
approval is decided or expires, or the step's timeout comes (`RunStore.claim` wakes
it); the approval itself is the approvals engine's
(`gateway.approvals.ApprovalService`): bound to the submitter-through-executor, the
gate and the plan, decided once by a named approver who is no party to the run.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gateway.approvals.errors import ApprovalsDisabled
from gateway.approvals.models import ApprovalStatus
from gateway.canonical import sha256_hex
from gateway.executor.plan import ToolStep
from gateway.logs import new_request_id
from gateway.types import Decision, Obligations, Operation

if TYPE_CHECKING:
    from gateway.executor.plan import ApprovalStep
    from gateway.executor.runner import RunExecution

GATE_TOOL = "workflow__approval_gate"
GATE_DEFINITION_HASH = sha256_hex({"name": GATE_TOOL, "version": 1})


async def approval_gate(run: RunExecution, step: ApprovalStep) -> bool:
    """An approval gate: asks for an approval, then waits for it holding nothing (the
    run is released and polls). Approved: the step succeeds with who approved it;
    denied or not decided within ``timeout_s``: the step fails. Returns whether the
    step changed."""
    approvals = run.deps.approvals
    state = run.states[step.id]
    if state.status == "pending":
        gate = step.approval
        message = gate.message or f"run {run.run_id} waits at approval gate {step.id}"
        call = Operation(
            principal=run.principal,
            method="tools/call",
            target=GATE_TOOL,
            # What the approval is bound to: this gate of this run, this plan.
            arguments={
                "run_id": run.run_id,
                "step_id": step.id,
                "plan_hash": run.provenance.get("plan_hash"),
                "message": message,
            },
            transport="executor",
            request_id=new_request_id(),
            run_id=run.run_id,
            step_id=step.id,
            idempotency_key=f"{run.run_id}:{step.id}",
        )
        decision = Decision(
            allow=True,
            require_approval=True,
            reasons=(message,),
            obligations=Obligations(
                approvers=tuple(gate.approvers), approval_ttl_s=max(1, math.ceil(gate.timeout_s))
            ),
            rule="plan_approval_gate",
            # Not policy, and not a refusal by the gateway's checks: the plan itself,
            # which policy allowed, asks for this approval.
            engine="plan",
            revision=run.deps.decider.revision,
        )
        try:
            approval = await approvals.request(call, GATE_DEFINITION_HASH, decision)
        except ApprovalsDisabled as disabled:
            await run.fail_step(step.id, disabled.to_dict())
            return True
        await run.set_step(
            step.id, wake_in_s=gate.timeout_s, status="waiting", approval_id=approval.id
        )
        run.event(
            "step.started", {"step_id": step.id, "kind": "approval", "approval_id": approval.id}
        )
        return True
    return await _settle_approval(run, step.id, state.approval_id)


async def _settle_approval(run: RunExecution, step_id: str, approval_id: str | None) -> bool:
    """Looks at a waiting step's approval: approved (gate succeeds, or the tool step is
    retried and now runs), denied, expired, or still pending."""
    if approval_id is None:
        return False
    try:
        approval = await run.deps.approvals.get_fresh(approval_id)
    except ApprovalsDisabled as disabled:  # since the step began waiting: never decided
        await run.fail_step(step_id, {**disabled.to_dict(), "approval_id": approval_id})
        return True
    step = run.plan.step(step_id)
    if approval.status is ApprovalStatus.APPROVED:
        if isinstance(step, ToolStep):
            # Runs now: the pipeline finds the approval usable and executes the call once.
            await run.set_step(step_id, status="pending", approval_id=None)
            return True
        output = {
            "approved_by": approval.decided_by,
            "decided_at": approval.decided_at,
            "reason": approval.decision_reason,
            "approval_id": approval.id,
        }
        await run.set_step(step_id, status="succeeded", output=output)
        run.event("step.completed", {"step_id": step_id, "approval_id": approval.id})
        return True
    if approval.status is ApprovalStatus.PENDING:
        if not await run.db(run.store.step_due, run.claim, step_id):
            return False
        error = {"code": "approval_timeout", "message": "no decision before the gate's timeout"}
    elif approval.status is ApprovalStatus.DENIED:
        error = {
            "code": "approval_denied",
            "message": f"denied by {approval.decided_by}: {approval.decision_reason}",
        }
    else:
        error = {"code": "approval_timeout", "message": f"the approval is {approval.status}"}
    await run.fail_step(step_id, {**error, "approval_id": approval.id})
    return True


async def waiting_tool_step(run: RunExecution, step: ToolStep) -> bool:
    """A tool step waiting for the approval its call needs: settles it."""
    return await _settle_approval(run, step.id, run.states[step.id].approval_id)
