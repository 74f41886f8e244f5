"""The audit records of approvals (architecture.md §6), one builder per kind.

- ``approval.request``: a call asked for approval (ref: the approval id). Arguments
  only as redacted by the policy's obligations, plus the hash of the full ones.
- ``approval.decision``: approved or denied by a person, or expired
  (``decided_by: "system:expiry"``) — never confused with a human denial.
- ``approval.refused``: someone tried to decide and was not allowed (self-approval,
  not an approver, policy): security-relevant, so recorded too.

The ``call.outcome`` of an approved call names its ``approval_id`` (gateway/pipeline.py).
"""

from __future__ import annotations

from typing import Any

from gateway.approvals.models import EXPIRY_DECIDER, Approval
from gateway.audit import AuditRecord
from gateway.errors import GatewayError
from gateway.operations import Operation
from gateway.types import Decision, Principal


def request_record(approval: Approval, call: Operation, decision: Decision) -> AuditRecord:
    payload = {
        "approval_id": approval.id,
        "request_id": call.request_id,
        "principal": call.principal.to_audit(),
        "tool": call.target,
        "definition_hash": approval.definition_hash,
        "arguments": approval.arguments_display,
        "arguments_sha256": approval.arguments_hash,
        "redacted": list(decision.obligations.redact),
        "reasons": list(approval.reasons),
        "approvers": list(approval.approvers),
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "policy": {
            "rule": decision.rule,
            "engine": decision.engine,
            "revision": decision.revision,
            "decision_id": decision.decision_id,
        },
    }
    return AuditRecord("approval.request", approval.id, payload, call.principal.sub, call.target)


def decision_record(
    approval: Approval,
    *,
    approver: Principal | None = None,
    request_id: str | None = None,
    policy: Decision | None = None,
) -> AuditRecord:
    """A decision by ``approver``, or (without one) an expiry."""
    payload: dict[str, Any] = {
        "approval_id": approval.id,
        "status": approval.status.value,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "channel": approval.channel,
        "reason": approval.decision_reason,
        "tool": approval.tool,
        "requester": approval.requester(),
        "arguments_sha256": approval.arguments_hash,
        "expires_at": approval.expires_at,
    }
    if approver is not None:
        payload["approver"] = approver.to_audit()
        payload["request_id"] = request_id
        payload["policy"] = policy.to_dict() if policy else None
    subject = approver.sub if approver is not None else EXPIRY_DECIDER
    return AuditRecord("approval.decision", approval.id, payload, subject, approval.tool)


def refusal_record(
    approval: Approval,
    approver: Principal,
    refusal: GatewayError,
    *,
    channel: str,
    request_id: str,
    policy: Decision | None,
) -> AuditRecord:
    payload = {
        "approval_id": approval.id,
        "approver": approver.to_audit(),
        "channel": channel,
        "request_id": request_id,
        "error": refusal.to_dict(),
        "policy": policy.to_dict() if policy else None,
    }
    return AuditRecord("approval.refused", approval.id, payload, approver.sub, approval.tool)
