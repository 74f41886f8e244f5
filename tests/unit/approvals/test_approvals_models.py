"""Who may see and decide an approval, and what its public view leaves out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.approvals.errors import NotAnApprover, SelfApproval
from gateway.approvals.models import (
    Approval,
    ApprovalStatus,
    add_seconds,
    format_time,
    parse_time,
)
from gateway.types import Actor, Identity, Principal, canonical_subject

ISS = "https://issuer.test"
APPROVAL = Approval(
    id="apr_1",
    status=ApprovalStatus.PENDING,
    requester_sub="agent:triage",
    requester_iss=ISS,
    requester_act_chain=(Actor("user:alice"),),
    tool="up__write",
    definition_hash=None,
    arguments_hash="ab" * 32,
    arguments_display={"key": "k"},
    reasons=("needs approval",),
    approvers=("role:security", "user:bob", "user:carol"),
    request_id="req_1",
    created_at="2026-11-21T10:00:00.000000Z",
    expires_at="2026-11-21T11:00:00.000000Z",
)


def who(sub: str, *roles: str, act: tuple[str, ...] = ()) -> Principal:
    return Principal(sub=sub, iss=ISS, roles=roles, act_chain=tuple(Actor(a) for a in act))


@pytest.mark.parametrize(
    ("principal", "entry"),
    [
        (who("user:dave", "security"), "role:security"),
        (who("user:bob"), "user:bob"),  # the subject itself
        (who("carol"), "user:carol"),  # a bare subject is a user's
        (who("USER:bob"), "user:bob"),  # the kind is compared without case
        (who("user:BOB"), None),  # the rest exactly
        (who("user:dave", "approver"), None),
        (who("role:security"), None),  # a subject is not a role
    ],
)
def test_named_approver(principal: Principal, entry: str | None) -> None:
    assert APPROVAL.named_approver(principal) == entry


@pytest.mark.parametrize(
    "principal",
    [
        who("agent:triage", "security"),  # the requester
        who("user:alice", "security"),  # in the requester's chain
        who("user:dave", "security", act=("agent:triage",)),  # requester in its chain
        who("user:dave", "security", act=("user:alice",)),  # shares a party
        # Other spellings of one person are that person (docs/identity.md).
        who("alice", "security"),
        who("USER:alice", "security"),
        who("Agent:triage", "security"),
        who("user:dave", "security", act=("AGENT:triage",)),
    ],
)
def test_parties_never_decide(principal: Principal) -> None:
    assert isinstance(APPROVAL.refusal_of(principal), SelfApproval)
    assert not APPROVAL.may_decide(principal)


def test_deciders_and_visibility() -> None:
    security = who("user:dave", "security")
    assert APPROVAL.refusal_of(security) is None and APPROVAL.may_decide(security)
    assert not replace(APPROVAL, status=ApprovalStatus.APPROVED).may_decide(security)
    stranger = who("user:erin", "viewer")
    assert isinstance(APPROVAL.refusal_of(stranger), NotAnApprover)
    assert not APPROVAL.visible_to(stranger)
    assert APPROVAL.visible_to(who("agent:triage"))  # the requester sees its own
    assert APPROVAL.visible_to(security)


def test_public_view_has_the_outcome_status_not_the_result() -> None:
    ran = replace(
        APPROVAL,
        outcome={
            "status": "ok",
            "request_id": "req_2",
            "result": {"content": [{"type": "text", "text": "secret output"}], "is_error": False},
        },
    )
    view = ran.to_dict()
    assert view["outcome"] == {
        "status": "ok",
        "request_id": "req_2",
        "is_error": False,
        "error_code": None,
    }
    assert "secret output" not in str(view)


def test_times_are_fixed_width_and_ordered() -> None:
    start = APPROVAL.created_at
    later = add_seconds(start, 0.5)
    assert later == "2026-11-21T10:00:00.500000Z" and later > start
    assert format_time(parse_time(later)) == later
    assert APPROVAL.expired_at("2026-11-21T11:00:00.000000Z")
    assert not APPROVAL.expired_at("2026-11-21T10:59:59.999999Z")


def test_identity_is_issuer_and_canonical_subject() -> None:
    assert (
        Identity.of("USER:alice", ISS) == Identity.of("alice", ISS) == Identity(ISS, "user:alice")
    )
    assert Identity.of("alice", ISS) != Identity.of("alice", "https://other.test")
    # An actor naming no issuer is of the token's issuer; one naming another is not.
    requester = who("agent:x", act=("user:alice",))
    assert Identity(ISS, "user:alice") in requester.parties()
    elsewhere = Principal("agent:x", ISS, act_chain=(Actor("user:alice", "https://other.test"),))
    assert Identity(ISS, "user:alice") not in elsewhere.parties()


def test_an_actor_of_another_issuer_is_another_person() -> None:
    other = replace(APPROVAL, requester_act_chain=(Actor("user:alice", "https://other.test"),))
    assert other.refusal_of(who("user:alice", "security")) is None


@pytest.mark.parametrize(
    ("sub", "canonical"),
    [
        ("alice", "user:alice"),
        ("USER:alice", "user:alice"),
        ("Agent:Triage", "agent:Triage"),
        ("agent:x:y", "agent:x:y"),
        ("user:", "user:user:"),
        ("1x:y", "user:1x:y"),
        ("a@b.c", "user:a@b.c"),
        ("spiffe://d/w", "spiffe://d/w"),
    ],
)
def test_canonical_subject_agrees_with_identity_rego(sub: str, canonical: str) -> None:
    # The same table is in policies/gateway/approvals_test.rego (test_canonical_subject).
    assert canonical_subject(sub) == canonical
