"""Plan review: one human approval of a whole plan before any of its steps runs.

Policy asks for it by answering ``plan/submit`` with ``require_approval`` and the
obligation ``plan_review: true`` (e.g. an ad hoc plan touching a destructive tool); a
published workflow may ask for it too (its ``approvals.plan``), and the stricter of the
two wins: policy's approvers when policy asks, the workflow's otherwise.

The review is an approval of the approvals engine (bound to the submitter, the run and
the plan hash; decided once; never by the submitter or anyone in its delegation chain),
whose arguments are the whole DAG with its arguments and the inputs as policy's
``redact`` obligations left them. The run is created ``waiting`` with
``review_status = "pending"`` and holds no lease until the approval is decided or
expires (`RunStore.claim`). Approved, its steps run, each decided again as a
``tools/call`` when it runs; denied or expired, the run fails before any step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.approvals.gate import Approvals
from gateway.approvals.models import Approval, ApprovalStatus
from gateway.canonical import sha256_hex
from gateway.executor.workflow_ref import WorkflowRef
from gateway.operations import Operation
from gateway.types import Decision, Obligations, Principal, Transport

REVIEW_TOOL = "workflow__plan_review"
REVIEW_DEFINITION_HASH = sha256_hex({"name": REVIEW_TOOL, "version": 1})


@dataclass(frozen=True)
class ReviewNeeded:
    approvers: tuple[str, ...]
    ttl_s: int | None
    reasons: tuple[str, ...]
    # "policy" or "workflow": who asked for the review.
    source: str


def review_needed(decision: Decision, workflow: WorkflowRef | None) -> ReviewNeeded | None:
    """Whether an allowed plan waits for a review, and whose."""
    if decision.allow and decision.require_approval and decision.obligations.plan_review:
        return ReviewNeeded(
            approvers=decision.obligations.approvers or ("role:approver",),
            ttl_s=decision.obligations.approval_ttl_s,
            reasons=decision.reasons,
            source="policy",
        )
    if decision.allow and workflow is not None and workflow.plan_approvers:
        return ReviewNeeded(
            approvers=workflow.plan_approvers,
            ttl_s=decision.obligations.approval_ttl_s,
            reasons=(f"workflow {workflow.name}@{workflow.version} asks for a plan review",),
            source="workflow",
        )
    return None


async def request_review(
    approvals: Approvals,
    review: ReviewNeeded,
    *,
    submitter: Principal,
    run_id: str,
    plan_hash: str,
    shown: dict[str, Any],
    decision: Decision,
    request_id: str,
    transport: Transport,
) -> Approval:
    """The approval a run waits for before any step. ``shown`` is the policy input as
    it may be recorded (`gateway.recording.recordable`): the plan and inputs the
    approver sees are already redacted, so the approval applies no pointers again."""
    call = Operation(
        principal=submitter,
        method="tools/call",
        target=REVIEW_TOOL,
        arguments={
            "run_id": run_id,
            "plan_hash": plan_hash,
            "workflow": shown["resource"].get("workflow"),
            "plan": shown["resource"]["plan"],
            "inputs": shown["arguments"],
        },
        transport=transport,
        request_id=request_id,
        run_id=run_id,
    )
    approval_decision = Decision(
        allow=True,
        require_approval=True,
        reasons=review.reasons,
        obligations=Obligations(
            approvers=review.approvers, approval_ttl_s=review.ttl_s, plan_review=True
        ),
        rule=decision.rule if review.source == "policy" else "workflow_plan_review",
        engine=decision.engine if review.source == "policy" else "workflow",
        revision=decision.revision,
        decision_id=decision.decision_id,
    )
    return await approvals.request(call, REVIEW_DEFINITION_HASH, approval_decision)


def review_outcome(approval: Approval) -> dict[str, Any] | None:
    """None when the approval approves the plan; otherwise the run's failure."""
    if approval.status is ApprovalStatus.APPROVED:
        return None
    if approval.status is ApprovalStatus.DENIED:
        return {
            "code": "plan_review_denied",
            "message": f"plan denied by {approval.decided_by}: {approval.decision_reason}",
            "approval_id": approval.id,
        }
    return {
        "code": "plan_review_expired",
        "message": f"the plan's review is {approval.status.value}",
        "approval_id": approval.id,
    }
