"""The approval step of the call path: a call whose decision is "allow once a human
approves" passes here, after its attempt and decision are audited.

    find the newest approval bound to (principal, tool, argument hash)
      none / expired / cancelled / past its TTL → request a new one (audited, webhook)
      pending  → hold it for up to approvals.hold_s, then:
      approved → claim the one execution and run it, or replay the recorded outcome
      denied   → refuse, naming the approver's reason
      still pending after the hold → answer pending_approval: retry the same call

The pipeline owns forwarding and the outcome record; this module decides whether, and
as which approval's single execution, the call is forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from gateway import telemetry
from gateway.approvals.disabled import DisabledApprovals
from gateway.approvals.errors import (
    ApprovalDenied,
    ApprovalExecuting,
    ApprovalExpired,
    ApprovalPending,
    ApprovalsDisabled,
    ApprovalUnusable,
    OutcomeErased,
    ReplayedError,
)
from gateway.approvals.models import Approval, ApprovalStatus, ExecutionState
from gateway.approvals.service import ApprovalService
from gateway.canonical import arguments_hash
from gateway.errors import ApprovalRequired, GatewayError
from gateway.operations import Operation
from gateway.types import Decision, Outcome, OutcomeStatus, ToolDefinition, ToolResult

# What runs approvals: the engine, or its null object when they are disabled.
Approvals = ApprovalService | DisabledApprovals

log = logging.getLogger(__name__)

# Strong references to claimed executions: the event loop keeps only weak ones.
_claimed_runs: set[asyncio.Task[Outcome]] = set()

# Runs the call upstream for the approval named; returns its outcome.
Forward = Callable[[str], Awaitable[Outcome]]
# Queues a ``call.outcome`` audit record with this payload.
RecordOutcome = Callable[[Operation, dict[str, Any]], None]


async def pass_gate(
    approvals: Approvals,
    call: Operation,
    tool: ToolDefinition,
    decision: Decision,
    *,
    forward: Forward,
    record_outcome: RecordOutcome,
) -> Outcome:
    if not decision.obligations.approvers:
        reason = "; ".join(decision.reasons) or "approval required"
        unusable = ApprovalUnusable(f"{reason}; but the policy names no approvers; not executed")
        return _outcome(call, decision, OutcomeStatus.DENIED, unusable)
    try:
        approval = await approvals.usable(
            call.principal, call.target, arguments_hash(call.arguments)
        )
        if approval is None:
            approval = await approvals.request(call, tool.definition_hash, decision)
        if approval.status is ApprovalStatus.PENDING:
            with telemetry.span("gateway.approval.wait") as span:
                approval = await approvals.hold(
                    approval, timeout_s=hold_s(call, approvals), progress=call.progress
                )
                if span is not None:
                    telemetry.annotate(
                        span,
                        {
                            "gateway.approval.id": approval.id,
                            "gateway.approval.status": approval.status.value,
                        },
                    )
        return await _settle(approvals, call, decision, approval, forward, record_outcome)
    except ApprovalsDisabled as disabled:
        reason = "; ".join(decision.reasons) or "approval required"
        required = ApprovalRequired(f"{reason}; {disabled.message}, so it was not executed")
        return _outcome(call, decision, OutcomeStatus.DENIED, required)
    except GatewayError as exc:  # the approval store or audit log failed: fail closed
        log.error("approval of %s failed: %s", call.request_id, exc.message)
        return _outcome(call, decision, OutcomeStatus.ERROR, exc)


def hold_s(call: Operation, approvals: ApprovalService) -> float:
    """The configured hold, shortened (never lengthened) by the caller's own limit."""
    configured = approvals.config.hold_s
    return configured if call.hold_s is None else max(0.0, min(configured, call.hold_s))


async def _settle(
    approvals: ApprovalService,
    call: Operation,
    decision: Decision,
    approval: Approval,
    forward: Forward,
    record_outcome: RecordOutcome,
) -> Outcome:
    status = approval.status
    if status is ApprovalStatus.PENDING or (
        # Approved, but the decision is not durable in the audit log yet: not runnable.
        status is ApprovalStatus.APPROVED and approval.decision_seq is None
    ):
        return _pending(call, decision, approval)
    if status is ApprovalStatus.DENIED:
        why = approval.decision_reason or "no reason given"
        denied = ApprovalDenied(f"{approval.decided_by} denied approval {approval.id}: {why}")
        return _outcome(call, decision, OutcomeStatus.DENIED, denied, approval)
    if status is not ApprovalStatus.APPROVED:  # expired or cancelled while held
        when = approval.decided_at or approval.expires_at
        ended = ApprovalExpired(
            f"approval {approval.id} {status.value} at {when} without a human decision; "
            "the call was not executed, and calling again requests a new approval"
        )
        return _outcome(call, decision, OutcomeStatus.DENIED, ended, approval)

    if approval.execution_state is ExecutionState.NONE:
        if await approvals.claim(approval, call.request_id) is not None:
            # Claimed: run and record to the end even if this request is cancelled (the
            # client went away), so retries replay the outcome instead of finding the
            # approval stuck in "running".
            run = asyncio.ensure_future(_run_claimed(approvals, call, approval, forward))
            _claimed_runs.add(run)
            run.add_done_callback(_claimed_runs.discard)
            return await asyncio.shield(run)
    # Another request runs (or ran) it: its recorded outcome, never a second execution.
    approval = await approvals.await_outcome(approval.id, hold_s(call, approvals))
    if approval.execution_state is ExecutionState.DONE:
        return _replay(call, decision, approval, record_outcome)
    if approval.execution_state is ExecutionState.RUNNING:
        running = ApprovalExecuting(
            f"the approved call is running for request {approval.execution_request_id}; "
            "retry the same call to get its recorded outcome"
        )
        return _outcome(call, decision, OutcomeStatus.ERROR, running, approval)
    lapsed = ApprovalExpired(
        f"approval {approval.id} expired at {approval.expires_at} before the call ran; "
        "calling again requests a new approval"
    )
    return _outcome(call, decision, OutcomeStatus.DENIED, lapsed, approval)


async def _run_claimed(
    approvals: ApprovalService, call: Operation, approval: Approval, forward: Forward
) -> Outcome:
    outcome = await forward(approval.id)
    try:
        await approvals.finish(approval.id, call.request_id, _recorded(outcome))
    except GatewayError as exc:  # it ran; retries will be told it is executing
        log.error("outcome of approval %s not stored: %s", approval.id, exc.message)
    return replace(outcome, approval_id=approval.id)


def _replay(
    call: Operation, decision: Decision, approval: Approval, record_outcome: RecordOutcome
) -> Outcome:
    recorded = approval.outcome or {}
    original = recorded.get("request_id")
    record_outcome(
        call,
        {
            "request_id": call.request_id,
            "status": "replayed",
            "approval_id": approval.id,
            "replay_of": original,
        },
    )
    result = recorded.get("result")
    error = recorded.get("error")
    replayed_error: GatewayError | None = None
    if recorded.get("erased"):
        erased = OutcomeErased(
            f"the call to {call.target} ran once, for request {original}; its recorded outcome "
            "was erased on request, and it is not run again"
        )
        return replace(
            _outcome(call, decision, OutcomeStatus.ERROR, erased, approval), replay_of=original
        )
    if error:
        replayed_error = ReplayedError(
            error.get("code", "error"),
            error.get("message", ""),
            http_status=error.get("http_status", 502),
        )
    return Outcome(
        call.request_id,
        call.target,
        OutcomeStatus(recorded.get("status", "error")),
        decision,
        result=ToolResult(**result) if result else None,
        error=replayed_error,
        approval_id=approval.id,
        replay_of=original,
    )


def _pending(call: Operation, decision: Decision, approval: Approval) -> Outcome:
    message = (
        f"pending_approval: the call to {call.target} waits for a human decision by "
        f"{', '.join(approval.approvers)} and was not executed; approval id {approval.id}, "
        f"expires {approval.expires_at} — retry the same call with the same arguments after "
        "approval (before it expires) to run it"
    )
    details = {
        "approval_id": approval.id,
        "expires_at": approval.expires_at,
        "approvers": list(approval.approvers),
    }
    pending = ApprovalPending(message, details=details)
    return _outcome(call, decision, OutcomeStatus.PENDING_APPROVAL, pending, approval)


def _outcome(
    call: Operation,
    decision: Decision,
    status: OutcomeStatus,
    error: GatewayError,
    approval: Approval | None = None,
) -> Outcome:
    return Outcome(
        call.request_id,
        call.target,
        status,
        decision,
        error=error,
        approval_id=approval.id if approval else None,
    )


def _recorded(outcome: Outcome) -> dict[str, Any]:
    """The outcome of an approved call as stored on its approval, for replays."""
    recorded: dict[str, Any] = {"status": outcome.status.value, "request_id": outcome.request_id}
    if outcome.result is not None:
        recorded["result"] = outcome.result.to_dict()
    if isinstance(outcome.error, GatewayError):
        recorded["error"] = {**outcome.error.to_dict(), "http_status": outcome.error.http_status}
    return recorded
