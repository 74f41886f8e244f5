"""What an approval is: its status, who asked, for what, and who may decide it.

An approval binds one principal (``sub`` + ``iss``), one tool and one argument hash
(architecture.md §9.4). It is decided once, by a party other than the requester, before it
expires; an approved approval lets exactly one call execute.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gateway.approvals.errors import (
    ApprovalError,
    ApprovalNotPending,
    NotAnApprover,
    SelfApproval,
)
from gateway.types import Actor, Identity, Principal, canonical_subject

Channel = Literal["rest", "cli", "console", "system"]
CHANNELS: tuple[Channel, ...] = ("rest", "cli", "console")

# Who "decides" an expiry: not a human, and never confused with one.
EXPIRY_DECIDER = "system:expiry"

# Every timestamp of an approval is UTC text of this fixed width, so that comparing the
# strings (in SQL too) compares the instants. See `ApprovalStore.now`.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ExecutionState(enum.StrEnum):
    """Whether the approved call ran: claimed by one request only (compare-and-swap)."""

    NONE = "none"
    RUNNING = "running"
    DONE = "done"


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def add_seconds(text: str, seconds: float) -> str:
    return format_time(parse_time(text) + timedelta(seconds=seconds))


@dataclass(frozen=True)
class Approval:
    id: str
    status: ApprovalStatus
    requester_sub: str
    requester_iss: str
    requester_act_chain: tuple[Actor, ...]
    tool: str
    definition_hash: str | None
    arguments_hash: str
    # Redacted per the decision's obligations: what approvers see. The real arguments
    # are never stored; the hash binds the approval to them.
    arguments_display: Any
    reasons: tuple[str, ...]
    approvers: tuple[str, ...]
    request_id: str
    created_at: str
    expires_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None
    channel: str | None = None
    execution_state: ExecutionState = ExecutionState.NONE
    execution_request_id: str | None = None
    outcome: dict[str, Any] | None = None
    # Audit seqs: the approval.request entry, and the approval.decision entry. An
    # approved call runs only once its decision is durable in the audit log (§9.2).
    request_seq: int | None = None
    decision_seq: int | None = None
    version: int = 0

    # --- who may do what ------------------------------------------------------------
    # Every comparison is of identities (issuer and canonical subject, gateway.types):
    # "USER:alice", "user:alice" and "alice" of one issuer are one person here, as in
    # approvals.rego.

    @property
    def requester_identity(self) -> Identity:
        return Identity.of(self.requester_sub, self.requester_iss)

    def parties(self) -> frozenset[Identity]:
        """The requester and everyone in its delegation chain."""
        return Principal(
            self.requester_sub, self.requester_iss, act_chain=self.requester_act_chain
        ).parties()

    def is_requester(self, principal: Principal) -> bool:
        return principal.identity == self.requester_identity

    def is_party(self, principal: Principal) -> bool:
        """True when ``principal`` (or anyone it acts through) took part in the request:
        such a principal must not decide it (§9.4)."""
        return bool(principal.parties() & self.parties())

    def named_approver(self, principal: Principal) -> str | None:
        """The entry of ``approvers`` this principal holds, if any: ``role:<r>`` by
        holding role r, any other entry by naming the principal's subject (compared
        canonically, e.g. ``user:alice`` names ``alice`` and ``USER:alice`` too)."""
        for entry in self.approvers:
            kind, _, name = entry.partition(":")
            if kind == "role":
                if name in principal.roles:
                    return entry
            elif canonical_subject(entry) == principal.identity.sub:
                return entry
        return None

    def visible_to(self, principal: Principal) -> bool:
        """The visibility rule of the REST API: requesters see their own approvals,
        approvers those they are named for."""
        return self.is_requester(principal) or self.named_approver(principal) is not None

    def refusal_of(self, principal: Principal) -> ApprovalError | None:
        """Why ``principal`` may not decide this approval whatever its status, or None:
        a party to the request never decides it (§9.4), and only a named approver does."""
        if self.is_party(principal):
            return SelfApproval(
                f"{principal.sub} requested this call or acts in its delegation chain, "
                "so may not decide it"
            )
        if self.named_approver(principal) is None:
            return NotAnApprover(
                f"{principal.sub} holds none of the approvers this call needs: "
                + ", ".join(self.approvers)
            )
        return None

    def why_not(self, principal: Principal) -> ApprovalError | None:
        """Why ``principal`` may not decide this approval now, or None if it may: not
        pending any more, or `refusal_of`. What the console and CLI show instead of
        Approve/Deny, and the error a decision would get."""
        if self.status is not ApprovalStatus.PENDING:
            return ApprovalNotPending(f"this approval is {self.status.value}, no longer pending")
        return self.refusal_of(principal)

    def may_decide(self, principal: Principal) -> bool:
        return self.why_not(principal) is None

    def expired_at(self, now: str) -> bool:
        return self.expires_at <= now

    # --- rendering ----------------------------------------------------------------

    def requester(self) -> dict[str, Any]:
        return {
            "sub": self.requester_sub,
            "iss": self.requester_iss,
            "act_chain": [a.to_dict() for a in self.requester_act_chain],
        }

    def to_policy_resource(self) -> dict[str, Any]:
        """``resource.approval`` of an ``approval/decide`` policy input."""
        return {
            "approval": {
                "id": self.id,
                "tool": self.tool,
                "requester": self.requester(),
                "approvers": list(self.approvers),
                "status": self.status.value,
                "arguments_hash": self.arguments_hash,
            }
        }

    def to_dict(self) -> dict[str, Any]:
        """The public view (REST, console, webhook): never the real arguments, and of
        the outcome only its status, not the tool's result."""
        outcome = None
        if self.outcome is not None:
            outcome = {
                "status": self.outcome.get("status"),
                "request_id": self.outcome.get("request_id"),
                "is_error": (self.outcome.get("result") or {}).get("is_error"),
                "error_code": (self.outcome.get("error") or {}).get("code"),
            }
        return {
            "id": self.id,
            "status": self.status.value,
            "tool": self.tool,
            "requester": self.requester(),
            "arguments": self.arguments_display,
            "arguments_hash": self.arguments_hash,
            "definition_hash": self.definition_hash,
            "reasons": list(self.reasons),
            "approvers": list(self.approvers),
            "request_id": self.request_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "decision_reason": self.decision_reason,
            "channel": self.channel,
            "execution_state": self.execution_state.value,
            "outcome": outcome,
            "version": self.version,
        }
