"""ApprovalService with real parts: the audit log and the embedded Rego engine on the
shipped policy, on SQLite and PostgreSQL. Who may decide, what is audited, holds,
expiry by the sweeper and the change feed."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from gateway.approvals import ApprovalService, ApprovalStatus, holds
from gateway.approvals.errors import (
    ApprovalNotFound,
    ApprovalNotPending,
    DecisionDeniedByPolicy,
    NotAnApprover,
    ReasonRequired,
    SelfApproval,
)
from gateway.approvals.holds import Signals
from gateway.audit import AuditLog, read_entries
from gateway.config import ApprovalsConfig
from gateway.errors import AuditUnavailable
from gateway.operations import Operation
from gateway.policy.embedded import EmbeddedEngine
from gateway.types import Actor, Decision, Obligations, Principal
from tests.support.approvals import lapse
from tests.support.deciding import decider_for
from tests.support.processes import write_policy
from tests.support.waiting import TIMEOUT_S, eventually_async

pytestmark = pytest.mark.anyio

ISS = "https://issuer.test"
AGENT = Principal(sub="agent:a", iss=ISS, roles=("agent",), act_chain=(Actor("user:alice"),))
BOB = Principal(sub="user:bob", iss=ISS, roles=("approver",))


def needs_approval(ttl_s: int | None = 3600, approvers: tuple[str, ...] = ("role:approver",)):
    return Decision(
        allow=True,
        require_approval=True,
        reasons=("up__write needs approval",),
        obligations=Obligations(
            redact=("/arguments/secret",), approvers=approvers, approval_ttl_s=ttl_s
        ),
        rule="approval_grant",
        engine="embedded",
        revision="sha256:test",
    )


def call(arguments: dict[str, object] | None = None, principal: Principal = AGENT) -> Operation:
    return Operation(
        principal=principal,
        method="tools/call",
        target="up__write",
        arguments=arguments if arguments is not None else {"key": "k", "secret": "s3cret"},
        transport="mcp",
        request_id=f"req_{time.monotonic_ns()}",
    )


# Longer than any test may run: a wait this long only ends by the event it waits for.
NEVER_S = 3600.0

Waiting = Callable[[str | None], Awaitable[None]]


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> Waiting:
    """``await waiting(approval_id)`` returns once something in the service waits for
    a wake-up about that approval (None: about any change), so that a test decides
    only after the waiter it means to wake is listening."""
    listening: defaultdict[str | None, asyncio.Event] = defaultdict(asyncio.Event)
    real_wait = Signals.wait

    async def wait(self: Signals, approval_id: str | None, timeout_s: float) -> None:
        # Set before the real wait registers, but the test only runs once this task
        # yields, inside that wait, registered.
        listening[approval_id].set()
        await real_wait(self, approval_id, timeout_s)

    monkeypatch.setattr(Signals, "wait", wait)

    async def waited(approval_id: str | None) -> None:
        await asyncio.wait_for(listening[approval_id].wait(), TIMEOUT_S)

    return waited


@pytest.fixture
async def parts(
    engine: Engine, tmp_path: Path
) -> AsyncIterator[tuple[ApprovalService, AuditLog, Engine]]:
    audit = AuditLog(engine, "test.gateway/audit")
    await audit.start()
    policy = EmbeddedEngine(write_policy(tmp_path, [], blocked_actors=["agent:evil"]))
    async with httpx.AsyncClient() as http:
        service = ApprovalService(
            database=engine,
            audit=audit,
            decider=decider_for(policy),
            config=ApprovalsConfig(hold_s=5, sweep_interval_s=0.2),
            public_url="http://gw.test",
            http=http,
        )
        await service.start()
        yield service, audit, engine
        await service.close()
    await audit.close()
    await policy.close()


def kinds(engine: Engine, ref: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.kind, e.payload or {}) for e in read_entries(engine, ref=ref)]


async def test_a_request_is_audited_redacted_and_reused(parts) -> None:
    service, _, engine = parts
    approval = await service.request(call(), "defhash", needs_approval())
    assert approval.status is ApprovalStatus.PENDING and approval.request_seq is not None
    assert approval.arguments_display == {"key": "k", "secret": "[redacted]"}
    [(kind, payload)] = kinds(engine, approval.id)
    assert kind == "approval.request"
    assert payload["arguments"] == {"key": "k", "secret": "[redacted]"}
    assert "s3cret" not in str(payload)
    assert payload["approvers"] == ["role:approver"]
    again = await service.request(call(), "defhash", needs_approval())
    assert again.id == approval.id  # a live pending approval for the same binding
    assert await service.usable(AGENT, "up__write", approval.arguments_hash) == approval


async def test_who_may_decide(parts) -> None:
    service, _, engine = parts
    approval = await service.request(call(), "defhash", needs_approval())
    requester_as_approver = Principal(sub="agent:a", iss=ISS, roles=("approver",))
    alice = Principal(sub="user:alice", iss=ISS, roles=("approver",))
    on_behalf = Principal(
        sub="user:carol", iss=ISS, roles=("approver",), act_chain=(Actor("agent:a"),)
    )
    viewer = Principal(sub="user:dave", iss=ISS, roles=("viewer",))
    for who in (requester_as_approver, alice, on_behalf):
        with pytest.raises(SelfApproval):
            await service.decide(approval.id, who, approve=True, reason=None, channel="rest")
    with pytest.raises(NotAnApprover):
        await service.decide(approval.id, viewer, approve=True, reason=None, channel="rest")
    with pytest.raises(ReasonRequired):
        await service.decide(approval.id, BOB, approve=False, reason="  ", channel="rest")
    # Passes the gateway's own checks, but policy refuses a chain through a blocked actor.
    relayed = Principal(
        sub="user:erin", iss=ISS, roles=("approver",), act_chain=(Actor("agent:evil"),)
    )
    with pytest.raises(DecisionDeniedByPolicy):
        await service.decide(approval.id, relayed, approve=True, reason=None, channel="rest")
    with pytest.raises(ApprovalNotFound):
        await service.decide("apr_nope", BOB, approve=True, reason=None, channel="rest")
    with pytest.raises(ApprovalNotFound):
        await service.get(approval.id, viewer)  # not visible: indistinguishable from absent

    decided = await service.decide(approval.id, BOB, approve=True, reason="fine", channel="cli")
    assert decided.status is ApprovalStatus.APPROVED and decided.decision_seq is not None
    assert (decided.decided_by, decided.channel, decided.decision_reason) == (
        "user:bob",
        "cli",
        "fine",
    )
    with pytest.raises(ApprovalNotPending):
        await service.decide(approval.id, BOB, approve=False, reason="late", channel="rest")

    recorded = kinds(engine, approval.id)
    assert [k for k, _ in recorded].count("approval.refused") == 5
    [decision] = [p for k, p in recorded if k == "approval.decision"]
    assert decision["status"] == "approved" and decision["decided_by"] == "user:bob"
    assert decision["policy"]["allow"] is True  # the approval/decide decision, recorded


async def test_a_named_user_may_decide(parts) -> None:
    service, _, _ = parts
    approval = await service.request(call(), "h", needs_approval(approvers=("user:frank",)))
    frank = Principal(sub="user:frank", iss=ISS, roles=())
    assert (await service.get(approval.id, frank)).may_decide(frank)
    with pytest.raises(NotAnApprover):
        await service.decide(approval.id, BOB, approve=True, reason=None, channel="rest")
    decided = await service.decide(approval.id, frank, approve=False, reason="no", channel="rest")
    assert decided.status is ApprovalStatus.DENIED


async def test_a_hold_is_released_at_once_by_a_decision_here(
    parts, waiting: Waiting, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No polling: only the in-process wake-up can end this hold before the test fails.
    monkeypatch.setattr(holds, "POLL_S", NEVER_S)
    service, _, _ = parts
    approval = await service.request(call(), "h", needs_approval())
    held = asyncio.create_task(service.hold(approval, timeout_s=NEVER_S, progress=None))
    await waiting(approval.id)
    await service.decide(approval.id, BOB, approve=True, reason=None, channel="rest")
    released = await asyncio.wait_for(held, TIMEOUT_S)
    assert released.status is ApprovalStatus.APPROVED


async def test_a_hold_reports_progress_and_ends_pending(parts) -> None:
    # The cadence of the reports is tests/unit/approvals/test_approvals_holds.py's, on
    # a clock that test moves; here, what a real hold reports first, and how it ends.
    service, _, _ = parts
    approval = await service.request(call(), "h", needs_approval())
    seen: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message))

    result = await service.hold(approval, timeout_s=2.5, progress=progress)
    assert result.status is ApprovalStatus.PENDING
    assert seen[0] == (0.0, f"waiting for approval {approval.id} (expires in 59 min)")


async def test_the_sweeper_expires_and_audits(parts) -> None:
    service, _, engine = parts
    approval = await service.request(call(), "h", needs_approval())
    lapse(engine, approval.id)  # its TTL runs out
    held = await service.hold(approval, timeout_s=TIMEOUT_S, progress=None)
    assert held.status is ApprovalStatus.EXPIRED  # the hold ends with the expiry
    [expiry] = await eventually_async(
        lambda: [p for k, p in kinds(engine, approval.id) if k == "approval.decision"],
        "the expiry in the audit log",
    )
    assert expiry["status"] == "expired" and expiry["decided_by"] == "system:expiry"
    with pytest.raises(ApprovalNotPending, match="expired at"):
        await service.decide(approval.id, BOB, approve=True, reason=None, channel="rest")
    assert await service.usable(AGENT, "up__write", approval.arguments_hash) is None


async def test_changes_long_poll_returns_on_a_decision(
    parts, waiting: Waiting, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(holds, "POLL_S", NEVER_S)  # only the wake-up ends the long poll
    service, _, _ = parts
    approval = await service.request(call(), "h", needs_approval())
    version = await service.current_version()
    polling = asyncio.create_task(service.changes(version, timeout_s=NEVER_S, principal=BOB))
    await waiting(None)
    await service.decide(approval.id, BOB, approve=True, reason=None, channel="console")
    changes = await asyncio.wait_for(polling, TIMEOUT_S)
    assert [a.id for a in changes.approvals] == [approval.id]
    assert changes.version > version
    stranger = Principal(sub="user:zed", iss=ISS, roles=())
    assert (await service.changes(version, principal=stranger)).approvals == []


async def test_a_decision_the_audit_log_cannot_take_is_undone(parts) -> None:
    service, audit, _ = parts
    approval = await service.request(call(), "h", needs_approval())
    await audit.close()
    with pytest.raises(AuditUnavailable):
        await service.decide(approval.id, BOB, approve=True, reason=None, channel="rest")
    assert (await service.get_fresh(approval.id)).status is ApprovalStatus.PENDING
