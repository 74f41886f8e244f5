"""A hold's pacing, on a clock the test moves: when it re-reads, reports progress and
gives up. The waits are a stand-in for `Signals` that lets the clock run on by the
time asked for, so nothing here depends on how fast the machine is."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.approvals import holds
from gateway.approvals.models import Approval, ApprovalStatus
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

APPROVAL = Approval(
    id="apr_1",
    status=ApprovalStatus.PENDING,
    requester_sub="agent:triage",
    requester_iss="https://issuer.test",
    requester_act_chain=(),
    tool="up__write",
    definition_hash=None,
    arguments_hash="ab" * 32,
    arguments_display={"key": "k"},
    reasons=("needs approval",),
    approvers=("role:approver",),
    request_id="req_1",
    created_at="2026-11-21T10:00:00.000000Z",
    expires_at="2999-01-01T00:00:00.000000Z",
)


class Waits:
    """`Signals` whose waits end by timing out, the clock moving on by the timeout."""

    closed = False

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.timeouts: list[float] = []

    async def wait(self, approval_id: str | None, timeout_s: float) -> None:
        assert approval_id == APPROVAL.id
        self.timeouts.append(timeout_s)
        self.clock.advance(timeout_s)


class Reads:
    """The approval as each re-read finds it: pending, unless told otherwise."""

    def __init__(self, *later: Approval) -> None:
        self.later = list(later)
        self.count = 0

    async def __call__(self, approval_id: str) -> Approval:
        self.count += 1
        return self.later.pop(0) if self.later else APPROVAL


async def test_a_hold_reports_progress_every_two_seconds_and_ends_pending() -> None:
    clock = FakeClock()
    waits, reads = Waits(clock), Reads()
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    started = clock()
    result = await holds.hold(
        APPROVAL, read=reads, signals=waits, timeout_s=2.5, progress=progress, clock=clock
    )
    assert result.status is ApprovalStatus.PENDING
    assert [(done, total) for done, total, _ in seen] == [(0.0, 2.5), (2.0, 2.5)]
    assert all((m or "").startswith("waiting for approval apr_1 (expires in") for *_, m in seen)
    assert clock() - started == 2.5  # gave up exactly at its timeout
    # Re-read every POLL_S, the last wait cut short by the timeout.
    assert waits.timeouts == [holds.POLL_S] * 5
    assert reads.count == 5


async def test_a_hold_ends_at_the_read_that_finds_the_approval_settled() -> None:
    clock = FakeClock()
    denied = replace(APPROVAL, status=ApprovalStatus.DENIED)
    reads = Reads(APPROVAL, denied)
    result = await holds.hold(
        APPROVAL, read=reads, signals=Waits(clock), timeout_s=60, progress=None, clock=clock
    )
    assert result is denied and reads.count == 2


async def test_an_approval_whose_decision_is_not_yet_audited_is_still_held() -> None:
    clock = FakeClock()
    undurable = replace(APPROVAL, status=ApprovalStatus.APPROVED, decision_seq=None)
    durable = replace(undurable, decision_seq=8)
    reads = Reads(undurable, undurable, durable)
    result = await holds.hold(
        APPROVAL, read=reads, signals=Waits(clock), timeout_s=60, progress=None, clock=clock
    )
    assert result is durable and reads.count == 3


async def test_a_client_that_cannot_take_progress_gets_no_more_but_the_hold_goes_on() -> None:
    clock = FakeClock()
    calls = []

    async def gone(done: float, total: float | None, message: str | None) -> None:
        calls.append(done)
        raise ConnectionError("client went away")

    reads = Reads()
    result = await holds.hold(
        APPROVAL, read=reads, signals=Waits(clock), timeout_s=5, progress=gone, clock=clock
    )
    assert result.status is ApprovalStatus.PENDING
    assert calls == [0.0]
    assert reads.count == 10  # the whole 5 s, re-reading every POLL_S
