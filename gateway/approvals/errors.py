"""Approval failures, each with a stable code and HTTP status (docs/approvals.md).

Two families: refusals of a *decision* (the approver gets them from the REST API or
CLI), and the ways a *held call* ends without running (the agent gets them as a
refused tool result).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import CallDenied, GatewayError

# --- deciding ---------------------------------------------------------------------


class ApprovalError(GatewayError):
    """Root of the errors of deciding an approval."""

    code = "approval_error"
    http_status = 400


class ApprovalNotFound(ApprovalError):
    """No such approval, or none this principal may see (the two are not told apart)."""

    code = "approval_not_found"
    http_status = 404


class ApprovalNotPending(ApprovalError):
    """Already decided, expired or cancelled: a decision is a single-use swap."""

    code = "approval_not_pending"
    http_status = 409


class SelfApproval(ApprovalError):
    """The approver requested the call, or appears in its delegation chain (or the
    requester appears in the approver's)."""

    code = "self_approval"
    http_status = 403


class NotAnApprover(ApprovalError):
    """The approver holds none of the roles or names the obligation lists."""

    code = "not_an_approver"
    http_status = 403


class DecisionDeniedByPolicy(ApprovalError):
    """Policy (``action: "approval/decide"``) refused this approver's decision."""

    code = "decision_denied_by_policy"
    http_status = 403


class ReasonRequired(ApprovalError):
    code = "reason_required"
    http_status = 400


# --- a held call that does not run -----------------------------------------------


class ApprovalPending(GatewayError):
    """No decision within the hold: the agent retries the same call later."""

    code = "pending_approval"
    http_status = 202


class ApprovalDenied(CallDenied):
    """A human denied the call."""

    code = "approval_denied"


class ApprovalExpired(CallDenied):
    """Nobody decided before the approval expired: not a human denial."""

    code = "approval_expired"


class ApprovalUnusable(CallDenied):
    """Policy asks for approval but names nobody who could give it (fail closed)."""

    code = "approval_unusable"


class ApprovalExecuting(GatewayError):
    """The approved call is running for another request; its outcome is not recorded yet."""

    code = "approval_executing"
    http_status = 409


class OutcomeErased(GatewayError):
    """The approved call already ran, and its recorded outcome was erased on request
    (`gateway audit erase --request`): a retry learns that, and nothing runs again."""

    code = "outcome_erased"
    http_status = 410


class ReplayedError(GatewayError):
    """The recorded error of an approved call that already ran, returned to a retry
    instead of running it again. Keeps the original code and HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int = 502,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.http_status = http_status


class ApprovalsDisabled(GatewayError):
    """The gateway runs with ``approvals.enabled: false``: nothing can be held for, or
    decided by, a human. A call that needs approval is refused (``approval_required``)."""

    code = "approvals_disabled"
    http_status = 404
