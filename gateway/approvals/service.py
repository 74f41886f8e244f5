"""`ApprovalService`: requesting, holding, expiring and reading approvals, and the way
in to deciding them (`gateway.approvals.decisions`).

Used by the pipeline (a call that needs approval), by the REST API and CLI, and by the
console (list/get/decide and the `changes` feed). Every state change is a
compare-and-swap in `ApprovalStore`; this module adds the audit records of requests
and expiries, the wake-ups and the webhook; `Decisions` adds the rules about *who*
may decide.

Audit order (architecture.md §9.2): an approval is decidable only once its ``approval.request``
entry is durable, and an approved call runs only once its ``approval.decision``
entry is (the store's swaps check ``request_seq``/``decision_seq``). If the audit log
cannot take a decision, the decision is undone and the approver gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from gateway.approvals import holds, records
from gateway.approvals.decisions import Decisions
from gateway.approvals.errors import ApprovalNotFound
from gateway.approvals.models import Approval, ApprovalStatus, Channel, ExecutionState, add_seconds
from gateway.approvals.notify import Notifier
from gateway.approvals.store import ApprovalStore, new_approval_id
from gateway.audit import AuditLog
from gateway.canonical import arguments_hash
from gateway.config import ApprovalsConfig
from gateway.errors import AuditUnavailable, GatewayError, StorageError
from gateway.operations import Operation, ProgressCallback
from gateway.policy.decider import Decider
from gateway.recording import recordable_arguments
from gateway.types import ClientInfo, Decision, Principal

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Changes:
    """What changed after a version: ``version`` is where the next call continues."""

    version: int
    approvals: list[Approval]


class ApprovalService:
    def __init__(
        self,
        *,
        database: sa.Engine,
        audit: AuditLog,
        decider: Decider,
        config: ApprovalsConfig,
        public_url: str,
        http: httpx.AsyncClient,
    ) -> None:
        self.store = ApprovalStore(database)
        self.config = config
        self._audit = audit
        self._signals = holds.Signals()
        self._decisions = Decisions(
            store=self.store,
            audit=audit,
            decider=decider,
            signals=self._signals,
            read=self.get_fresh,
            db=self._db,
        )
        self._notifier = (
            Notifier(
                http, url=config.webhook_url, format=config.webhook_format, public_url=public_url
            )
            if config.webhook_url
            else None
        )
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Starts the expiry sweeper (after the audit log is running)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        """Stops the sweeper and releases held calls (they answer pending_approval)."""
        self._signals.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._notifier is not None:
            await self._notifier.close()

    # --- for the pipeline -----------------------------------------------------------

    async def usable(self, principal: Principal, tool: str, args_hash: str) -> Approval | None:
        """The newest approval bound to this principal, tool and argument hash that
        still governs the call, or None when a new request is needed: there is none,
        or it expired, was cancelled, or its TTL has passed (an approval, a denial and
        a recorded outcome hold until ``expires_at``)."""
        approval, now = await self._db(self.store.newest_bound, principal.identity, tool, args_hash)
        if approval is None:
            return None
        if approval.status is ApprovalStatus.PENDING and approval.expired_at(now):
            approval = await self._expire(approval.id)
        if approval.status in (ApprovalStatus.EXPIRED, ApprovalStatus.CANCELLED):
            return None
        if approval.execution_state is ExecutionState.RUNNING:
            return approval  # its outcome is on the way: never a second execution
        return None if approval.expired_at(now) else approval

    async def request(self, call: Operation, definition_hash: str, decision: Decision) -> Approval:
        """A new pending approval for ``call`` (or the live one a concurrent identical
        call just created), audited as ``approval.request`` and announced."""
        shown = recordable_arguments(call.arguments, decision)
        ttl = decision.obligations.approval_ttl_s or self.config.default_ttl_s
        now = await self._db(self.store.now)
        draft = Approval(
            id=new_approval_id(),
            status=ApprovalStatus.PENDING,
            requester_sub=call.principal.sub,
            requester_iss=call.principal.iss,
            requester_act_chain=call.principal.act_chain,
            tool=call.target,
            definition_hash=definition_hash,
            arguments_hash=arguments_hash(call.arguments),
            arguments_display=shown,
            reasons=decision.reasons,
            approvers=decision.obligations.approvers,
            request_id=call.request_id,
            created_at=now,
            expires_at=add_seconds(now, ttl),
        )
        approval, created = await self._db(self.store.insert_pending, draft)
        if not created:
            return approval
        record = records.request_record(approval, call, decision)
        try:
            [seq] = await self._audit.append(record)
        except AuditUnavailable:
            # Undecidable without its audit record; cancel it so nobody waits on it.
            await self._db(
                self.store.cancel, approval.id, by="system:audit", reason="audit log unavailable"
            )
            raise
        approval = await self._db(self.store.set_request_seq, approval.id, seq) or approval
        self._signals.fire(approval.id)
        if self._notifier is not None:
            self._notifier.requested(approval)
        return approval

    async def hold(
        self, approval: Approval, *, timeout_s: float, progress: ProgressCallback | None
    ) -> Approval:
        """Waits up to ``timeout_s`` for a decision (or expiry); the approval as last read."""
        return await holds.hold(
            approval,
            read=self.get_fresh,
            signals=self._signals,
            timeout_s=timeout_s,
            progress=progress,
        )

    async def claim(self, approval: Approval, request_id: str) -> Approval | None:
        """The one execution of an approved call; None if another request has it (or
        the approval lapsed)."""
        claimed = await self._db(self.store.claim, approval.id, request_id)
        if claimed is not None:
            self._signals.fire(approval.id)
        return claimed

    async def finish(self, approval_id: str, request_id: str, outcome: dict[str, Any]) -> None:
        """Records the outcome of the execution, for retries to replay."""
        await self._db(self.store.finish, approval_id, request_id, outcome)
        self._signals.fire(approval_id)

    async def await_outcome(self, approval_id: str, timeout_s: float) -> Approval:
        """Waits up to ``timeout_s`` for a running execution to record its outcome."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            current = await self.get_fresh(approval_id)
            remaining = deadline - loop.time()
            if current.execution_state is not ExecutionState.RUNNING or remaining <= 0:
                return current
            await self._signals.wait(approval_id, min(holds.POLL_S, remaining))

    # --- reading --------------------------------------------------------------------

    async def get_fresh(self, approval_id: str) -> Approval:
        """The approval as stored now, expired first if it is due. Raises
        `ApprovalNotFound`."""
        approval, now = await self._db(self.store.get, approval_id)
        if approval is None:
            raise ApprovalNotFound(f"no approval {approval_id}")
        if approval.status is ApprovalStatus.PENDING and approval.expired_at(now):
            approval = await self._expire(approval_id)
        return approval

    async def get(self, approval_id: str, principal: Principal) -> Approval:
        """An approval this principal may see (see `Approval.visible_to`); others are
        not found, so ids do not reveal what they are for."""
        approval = await self.get_fresh(approval_id)
        if not approval.visible_to(principal):
            raise ApprovalNotFound(f"no approval {approval_id}")
        return approval

    async def list(
        self,
        principal: Principal | None,
        *,
        status: ApprovalStatus | None = None,
        limit: int = 50,
    ) -> list[Approval]:
        """Newest first; for a principal only what it may see (None: everything)."""

        def collect() -> list[Approval]:
            out = []
            for approval in self.store.scan((status,) if status else ()):
                if principal is None or approval.visible_to(principal):
                    out.append(approval)
                    if len(out) >= limit:
                        break
            return out

        found = await self._db(collect)
        now = await self._db(self.store.now)
        fresh = []
        for approval in found:  # lazily expire what the sweeper has not reached yet
            if approval.status is ApprovalStatus.PENDING and approval.expired_at(now):
                approval = await self._expire(approval.id)
            if status is None or approval.status is status:
                fresh.append(approval)
        return fresh

    async def changes(
        self,
        since_version: int,
        *,
        timeout_s: float = 0.0,
        principal: Principal | None = None,
        limit: int = 100,
    ) -> Changes:
        """Approvals changed after ``since_version`` (oldest change first), waiting up
        to ``timeout_s`` for one (long poll). Pass the returned ``version`` next time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            changed = await self._db(self.store.changed_since, since_version, limit)
            if changed:
                version = changed[-1].version
                visible = [a for a in changed if principal is None or a.visible_to(principal)]
                if visible or loop.time() >= deadline:
                    return Changes(version, visible)
                since_version = version  # nothing for this principal yet: keep waiting
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._signals.closed:
                return Changes(since_version, [])
            await self._signals.wait(None, min(holds.POLL_S, remaining))

    async def current_version(self) -> int:
        return await self._db(self.store.max_version)

    # --- deciding ---------------------------------------------------------------------

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
        """Approves or denies a pending approval, or raises why not (docs/approvals.md):
        the checks and their audit records are `Decisions.decide`'s."""
        return await self._decisions.decide(
            approval_id,
            approver,
            approve=approve,
            reason=reason,
            channel=channel,
            request_id=request_id,
            client=client,
        )

    # --- internals ----------------------------------------------------------------------

    async def _expire(self, approval_id: str) -> Approval:
        """Expires a due pending approval (once, whichever process gets there first)."""
        expired = await self._db(self.store.expire, approval_id)
        if expired is None:  # not due, or another process expired/decided it first
            current, _ = await self._db(self.store.get, approval_id)
            if current is None:
                raise ApprovalNotFound(f"no approval {approval_id}")
            return current
        record = records.decision_record(expired)
        try:
            await self._audit.append(record)
        except AuditUnavailable as exc:
            log.error("expiry of %s not recorded: %s", expired.id, exc.message)
        self._signals.fire(expired.id)
        log.info("approval %s expired at %s", expired.id, expired.expires_at)
        return expired

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                for approval_id in await self._db(self.store.due_for_expiry):
                    await self._expire(approval_id)
            except GatewayError as exc:
                log.warning("approval expiry sweep failed: %s", exc.message)
            except Exception:  # a bug must not stop expiry for the life of the process
                log.exception("approval expiry sweep failed")

    async def _db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs a blocking store call in a worker thread; database failures become
        `StorageError` (fail closed: a call is not run on an unreadable approval)."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except sa.exc.SQLAlchemyError as exc:
            log.error("approval store failed: %s", exc)
            raise StorageError(f"approval store unavailable ({type(exc).__name__})") from None
