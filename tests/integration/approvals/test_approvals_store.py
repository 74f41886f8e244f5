"""The approvals table's compare-and-swap rules and expiry, on SQLite and PostgreSQL.

Each rule is a condition in an UPDATE's WHERE clause; these tests show each swap
happens once, only from the state it names, and that concurrent attempts (threads
with their own connections, as several processes would be) have one winner.

Expiry compares against the database clock; a test makes a TTL run out by moving the
approval's ``expires_at`` into the past (`tests.support.approvals.lapse`), never by
waiting for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.approvals.models import (
    EXPIRY_DECIDER,
    TIME_FORMAT,
    Approval,
    ApprovalStatus,
    ExecutionState,
    add_seconds,
)
from gateway.approvals.store import ApprovalStore, new_approval_id
from gateway.types import Actor, Identity
from tests.support.approvals import lapse

HASH = "ab" * 32


def draft(ttl_s: float = 3600, *, sub: str = "agent:a", arguments_hash: str = HASH) -> Approval:
    now = "2026-01-01T00:00:00.000000Z"  # only the TTL counts: the store uses its clock
    return Approval(
        id=new_approval_id(),
        status=ApprovalStatus.PENDING,
        requester_sub=sub,
        requester_iss="https://issuer.test",
        requester_act_chain=(Actor("user:alice"),),
        tool="up__write",
        definition_hash="cd" * 32,
        arguments_hash=arguments_hash,
        arguments_display={"key": "k", "secret": "[redacted]"},
        reasons=("needs approval",),
        approvers=("role:approver",),
        request_id="req_1",
        created_at=now,
        expires_at=add_seconds(now, ttl_s),
    )


@pytest.fixture
def store(engine: Engine) -> ApprovalStore:
    return ApprovalStore(engine)


def audited(store: ApprovalStore, ttl_s: float = 3600, **kwargs: Any) -> Approval:
    """A pending approval whose request is in the audit log (decidable)."""
    approval, created = store.insert_pending(draft(ttl_s, **kwargs))
    assert created
    result = store.set_request_seq(approval.id, 7)
    assert result is not None
    return result


def approved(store: ApprovalStore) -> Approval:
    approval = audited(store)
    assert store.decide(
        approval.id, approve=True, decided_by="user:bob", reason=None, channel="rest"
    )
    result = store.set_decision_seq(approval.id, 8)
    assert result is not None
    return result


def test_insert_uses_the_database_clock_and_round_trips(store: ApprovalStore) -> None:
    before = store.now()
    approval, created = store.insert_pending(draft(60))
    assert created and approval.status is ApprovalStatus.PENDING
    assert approval.created_at >= before  # recomputed from the store's clock, not the draft
    assert approval.expires_at == add_seconds(approval.created_at, 60)
    stored, now = store.get(approval.id)
    assert stored == approval
    assert stored.requester_act_chain == (Actor("user:alice"),)
    assert stored.arguments_display == {"key": "k", "secret": "[redacted]"}
    assert len(now) == len(time.strftime(TIME_FORMAT.replace("%f", "000000")))


def test_a_live_pending_approval_is_reused_for_the_same_binding(store: ApprovalStore) -> None:
    first, _ = store.insert_pending(draft())
    again, created = store.insert_pending(draft())
    assert not created and again.id == first.id
    other, created = store.insert_pending(draft(arguments_hash="ef" * 32))
    assert created and other.id != first.id  # other arguments: another approval
    requester = Identity.of("agent:a", "https://issuer.test")
    newest, _ = store.newest_bound(requester, "up__write", "ef" * 32)
    assert newest is not None and newest.id == other.id


def test_a_decision_needs_the_request_audited_and_happens_once(store: ApprovalStore) -> None:
    approval, _ = store.insert_pending(draft())
    assert (
        store.decide(approval.id, approve=True, decided_by="b", reason=None, channel="rest") is None
    )
    assert store.set_request_seq(approval.id, 1) is not None
    denied = store.decide(approval.id, approve=False, decided_by="b", reason="no", channel="cli")
    assert denied is not None and denied.status is ApprovalStatus.DENIED
    assert (denied.decided_by, denied.decision_reason, denied.channel) == ("b", "no", "cli")
    assert denied.decided_at is not None
    # Single use: neither a second denial nor a late approval changes it.
    assert (
        store.decide(approval.id, approve=True, decided_by="c", reason=None, channel="rest") is None
    )
    assert store.get(approval.id)[0].status is ApprovalStatus.DENIED  # type: ignore[union-attr]


def test_expiry_happens_once_and_only_when_due(store: ApprovalStore, engine: Engine) -> None:
    approval = audited(store)
    assert store.expire(approval.id) is None  # not due yet
    assert store.due_for_expiry() == []
    lapse(engine, approval.id)
    assert store.due_for_expiry() == [approval.id]
    # Once due, a decision can no longer win, even though the row still says pending.
    assert (
        store.decide(approval.id, approve=True, decided_by="b", reason=None, channel="rest") is None
    )
    expired = store.expire(approval.id)
    assert expired is not None and expired.status is ApprovalStatus.EXPIRED
    assert expired.decided_by == EXPIRY_DECIDER and expired.channel == "system"
    assert store.expire(approval.id) is None
    assert store.due_for_expiry() == []


def test_a_decided_approval_does_not_expire(store: ApprovalStore, engine: Engine) -> None:
    approval = approved(store)
    lapse(engine, approval.id)
    assert store.expire(approval.id) is None
    assert store.get(approval.id)[0].status is ApprovalStatus.APPROVED  # type: ignore[union-attr]


def test_execution_is_claimed_once_and_finished_by_its_claimant(store: ApprovalStore) -> None:
    approval = audited(store)
    assert store.claim(approval.id, "req_a") is None  # pending: nothing to run
    store.decide(approval.id, approve=True, decided_by="b", reason=None, channel="rest")
    assert store.claim(approval.id, "req_a") is None  # decision not yet in the audit log
    store.set_decision_seq(approval.id, 9)
    claimed = store.claim(approval.id, "req_a")
    assert claimed is not None and claimed.execution_state is ExecutionState.RUNNING
    assert claimed.execution_request_id == "req_a"
    assert store.claim(approval.id, "req_b") is None
    assert store.finish(approval.id, "req_b", {"status": "ok"}) is None  # not its claim
    done = store.finish(approval.id, "req_a", {"status": "ok", "request_id": "req_a"})
    assert done is not None and done.execution_state is ExecutionState.DONE
    assert done.outcome == {"status": "ok", "request_id": "req_a"}
    assert store.claim(approval.id, "req_c") is None


def test_an_approval_past_its_ttl_cannot_be_claimed(store: ApprovalStore, engine: Engine) -> None:
    approval = approved(store)
    lapse(engine, approval.id)
    assert store.claim(approval.id, "req_late") is None


def test_a_denied_approval_cannot_be_claimed(store: ApprovalStore) -> None:
    approval = audited(store)
    store.decide(approval.id, approve=False, decided_by="b", reason="no", channel="rest")
    store.set_decision_seq(approval.id, 3)
    assert store.claim(approval.id, "req_a") is None


def test_undo_only_before_the_decision_is_audited(store: ApprovalStore) -> None:
    approval = audited(store)
    store.decide(approval.id, approve=True, decided_by="b", reason="ok", channel="rest")
    undone = store.undo_decision(approval.id)
    assert undone is not None and undone.status is ApprovalStatus.PENDING
    assert undone.decided_by is None and undone.decided_at is None
    store.decide(approval.id, approve=True, decided_by="b", reason=None, channel="rest")
    store.set_decision_seq(approval.id, 4)
    assert store.undo_decision(approval.id) is None


def test_versions_grow_with_every_change_and_feed_the_change_list(store: ApprovalStore) -> None:
    start = store.max_version()
    approval = approved(store)
    versions = [a.version for a in store.changed_since(start, 100)]
    assert versions == [approval.version]  # one row: only its newest version is listed
    assert approval.version == start + 4  # insert, request seq, decision, decision seq
    other = audited(store, arguments_hash="12" * 32)
    feed = store.changed_since(approval.version, 100)
    assert [a.id for a in feed] == [other.id]
    assert store.changed_since(store.max_version(), 100) == []


def test_scan_filters_by_status_newest_first(store: ApprovalStore) -> None:
    first = audited(store, arguments_hash="01" * 32)
    second = approved(store)
    pending = list(store.scan((ApprovalStatus.PENDING,)))
    assert [a.id for a in pending] == [first.id]
    assert [a.id for a in store.scan()][:2] == [second.id, first.id]


@pytest.mark.parametrize("action", ["decide", "claim", "expire"])
def test_concurrent_swaps_have_exactly_one_winner(
    store: ApprovalStore, engine: Engine, action: str
) -> None:
    if action == "claim":
        approval = approved(store)
    else:
        approval = audited(store)
    if action == "expire":
        lapse(engine, approval.id)
    swaps: dict[str, Callable[[int], Approval | None]] = {
        "decide": lambda i: store.decide(
            approval.id, approve=i % 2 == 0, decided_by=f"u{i}", reason="r", channel="rest"
        ),
        "claim": lambda i: store.claim(approval.id, f"req_{i}"),
        "expire": lambda i: store.expire(approval.id),
    }
    winners: list[Approval] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        result = swaps[action](i)
        if result is not None:
            winners.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1


def test_now_is_fixed_width_utc(engine: Engine) -> None:
    now = ApprovalStore(engine).now()
    assert now.endswith("Z") and len(now) == len("2026-01-01T00:00:00.000000Z")
    assert replace(draft(), created_at=now).created_at == now
