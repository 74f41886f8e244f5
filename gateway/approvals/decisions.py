"""`Decisions`: deciding an approval — who may, the checks in their order, and what the
audit log keeps of a decision or of a refused attempt (docs/approvals.md, §9.4).

A party to the request never decides it, however its subject is spelled, and only a
named approver does (`Approval.refusal_of`); policy (``approval/decide``) has the last
word before the single-use swap in `ApprovalStore`. A refused attempt is audited as
``approval.refused``. Audit order (architecture.md §9.2): an approved call runs only
once its ``approval.decision`` entry is durable; if the audit log cannot take a
decision, the decision is undone and the approver gets the error.

`ApprovalService.decide` is the way in: the service hands `Decisions` its store, audit
log, policy decider, wake-ups, reading of an approval and runner of store calls, and
keeps no decision rule of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from gateway.approvals import holds, records
from gateway.approvals.errors import (
    ApprovalNotPending,
    DecisionDeniedByPolicy,
    ReasonRequired,
)
from gateway.approvals.models import CHANNELS, Approval, ApprovalStatus, Channel
from gateway.approvals.store import ApprovalStore
from gateway.audit import AuditLog
from gateway.errors import AuditUnavailable, BadRequest, GatewayError
from gateway.logs import new_request_id
from gateway.policy import build_input
from gateway.policy.decider import Decider
from gateway.types import ClientInfo, Decision, Principal

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_REASON_CHARS = 2000


class StoreCall(Protocol):
    """Runs a blocking `ApprovalStore` call in a worker thread (the service's runner,
    which turns database failures into `StorageError`)."""

    def __call__(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]: ...


class Decisions:
    def __init__(
        self,
        *,
        store: ApprovalStore,
        audit: AuditLog,
        decider: Decider,
        signals: holds.Signals,
        read: Callable[[str], Awaitable[Approval]],
        db: StoreCall,
    ) -> None:
        """``read`` is the service's `get_fresh` (expired first if due, or
        `ApprovalNotFound`); ``db`` its runner of store calls."""
        self._store = store
        self._audit = audit
        self._decider = decider
        self._signals = signals
        self._read = read
        self._db = db

    async def decide(
        self,
        approval_id: str,
        approver: Principal,
        *,
        approve: bool,
        reason: str | None,
        channel: Channel,
        request_id: str | None = None,
        client: ClientInfo | None = None,
    ) -> Approval:
        """Approves or denies a pending approval, or raises why not (docs/approvals.md).

        Checks, in order: a reason for a denial; the approval exists; the approver is
        no party to the request; the approver holds a named approver entry; it is still
        pending; policy (``approval/decide``) allows; then the single-use swap."""
        if channel not in CHANNELS:
            raise BadRequest(f"channel must be one of {list(CHANNELS)}")
        reason = (reason or "").strip() or None
        if not approve and reason is None:
            raise ReasonRequired("a reason is required to deny an approval")
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise BadRequest(f"reason is longer than {MAX_REASON_CHARS} characters")
        request_id = request_id or new_request_id()
        approval = await self._read(approval_id)
        policy: Decision | None = None
        refusal = approval.refusal_of(approver)
        if refusal is None:
            if approval.status is not ApprovalStatus.PENDING:
                raise _not_pending(approval)
            policy_input = build_input(
                principal=approver,
                action="approval/decide",
                request_id=request_id,
                transport="rest",
                resource=approval.to_policy_resource(),
                client=client,
            )
            policy = await self._decider.decide(policy_input)
            if not policy.allow:
                refusal = DecisionDeniedByPolicy(
                    "policy does not let this approver decide: "
                    + ("; ".join(policy.reasons) or "denied")
                )
        if refusal is not None:
            await self._audit_refusal(approval, approver, refusal, channel, request_id, policy)
            raise refusal

        decided = await self._db(
            self._store.decide,
            approval.id,
            approve=approve,
            decided_by=approver.sub,
            reason=reason,
            channel=channel,
        )
        if decided is None:  # lost the swap: decided or expired meanwhile
            raise _not_pending(await self._read(approval.id))
        record = records.decision_record(
            decided, approver=approver, request_id=request_id, policy=policy
        )
        try:
            [seq] = await self._audit.append(record)
        except AuditUnavailable:
            await self._db(self._store.undo_decision, decided.id)
            self._signals.fire(decided.id)
            raise
        decided = await self._db(self._store.set_decision_seq, decided.id, seq) or decided
        self._signals.fire(decided.id)
        log.info("approval %s %s by %s via %s", decided.id, decided.status, approver.sub, channel)
        return decided

    async def _audit_refusal(
        self,
        approval: Approval,
        approver: Principal,
        refusal: GatewayError,
        channel: str,
        request_id: str,
        policy: Decision | None,
    ) -> None:
        record = records.refusal_record(
            approval, approver, refusal, channel=channel, request_id=request_id, policy=policy
        )
        try:
            await self._audit.append(record)
        except AuditUnavailable as exc:
            log.error("refused decision on %s not recorded: %s", approval.id, exc.message)


def _not_pending(approval: Approval) -> ApprovalNotPending:
    if approval.status is ApprovalStatus.PENDING:  # its request is still being audited
        return ApprovalNotPending(f"approval {approval.id} is not ready yet; try again")
    if approval.status is ApprovalStatus.EXPIRED:
        return ApprovalNotPending(f"approval {approval.id} expired at {approval.expires_at}")
    by = f" by {approval.decided_by}" if approval.decided_by else ""
    return ApprovalNotPending(f"approval {approval.id} is already {approval.status.value}{by}")
