"""Approvals inside runs: approval gate steps, and tool steps whose call needs one.

Either way the run waits released (no lease, no worker, nothing written) until the
approval is decided or expires, or the step's timeout comes (`RunStore.claim` wakes
it); the approval itself is the approvals engine's
(`gateway.approvals.ApprovalService`): bound to the submitter-through-executor, the
gate and the plan, decided once by a named approver who is no party to the run.

Like a tool step's logic (`gateway.executor.steps`), each function returns what
happened to the step, a `Transition` (or ``None``: nothing did), and the runner
applies it.
"""

from __future__ import annotations

import math

from gateway.approvals.errors import ApprovalsDisabled
from gateway.approvals.models import ApprovalStatus
from gateway.canonical import sha256_hex
from gateway.executor.plan import ApprovalStep, ToolStep
from gateway.executor.run_view import RunView
from gateway.executor.step_state import StepStatus, Transition
from gateway.logs import new_request_id
from gateway.operations import Operation
from gateway.types import Decision, Obligations

GATE_TOOL = "workflow__approval_gate"
GATE_DEFINITION_HASH = sha256_hex({"name": GATE_TOOL, "version": 1})


async def approval_gate(run: RunView, step: ApprovalStep) -> Transition | None:
    """An approval gate: asks for an approval, then waits for it holding nothing (the
    run is released and polls). Approved: the step succeeds with who approved it;
    denied or not decided within ``timeout_s``: the step fails. ``None`` while it is
    still pending."""
    approvals = run.deps.approvals
    state = run.state(step.id)
    if state.status == StepStatus.PENDING:
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
            return Transition.failed(step.id, disabled.to_dict())
        return Transition(
            step.id,
            {"status": StepStatus.WAITING, "approval_id": approval.id},
            wake_in_s=gate.timeout_s,
            event=(
                "step.started",
                {"step_id": step.id, "kind": "approval", "approval_id": approval.id},
            ),
        )
    return await _settle_approval(run, step.id, state.approval_id)


async def _settle_approval(
    run: RunView, step_id: str, approval_id: str | None
) -> Transition | None:
    """Looks at a waiting step's approval: approved (gate succeeds, or the tool step is
    retried and now runs), denied, expired, or still pending (``None``)."""
    if approval_id is None:
        return None
    try:
        approval = await run.deps.approvals.get_fresh(approval_id)
    except ApprovalsDisabled as disabled:  # since the step began waiting: never decided
        return Transition.failed(step_id, {**disabled.to_dict(), "approval_id": approval_id})
    step = run.plan.step(step_id)
    if approval.status is ApprovalStatus.APPROVED:
        if isinstance(step, ToolStep):
            # Runs now: the pipeline finds the approval usable and executes the call once.
            return Transition(step_id, {"status": StepStatus.PENDING, "approval_id": None})
        output = {
            "approved_by": approval.decided_by,
            "decided_at": approval.decided_at,
            "reason": approval.decision_reason,
            "approval_id": approval.id,
        }
        return Transition(
            step_id,
            {"status": StepStatus.SUCCEEDED, "output": output},
            event=("step.completed", {"step_id": step_id, "approval_id": approval.id}),
        )
    if approval.status is ApprovalStatus.PENDING:
        if not await run.db(run.deps.store.step_due, run.claim, step_id):
            return None
        error = {"code": "approval_timeout", "message": "no decision before the gate's timeout"}
    elif approval.status is ApprovalStatus.DENIED:
        error = {
            "code": "approval_denied",
            "message": f"denied by {approval.decided_by}: {approval.decision_reason}",
        }
    else:
        error = {"code": "approval_timeout", "message": f"the approval is {approval.status}"}
    return Transition.failed(step_id, {**error, "approval_id": approval.id})


async def waiting_tool_step(run: RunView, step: ToolStep) -> Transition | None:
    """A tool step waiting for the approval its call needs: settles it."""
    return await _settle_approval(run, step.id, run.state(step.id).approval_id)
