"""The plan_review obligation: parsed strictly, shown only when set, and what it means
for a plan (`gateway.executor.review.review_needed`)."""

from __future__ import annotations

import pytest

from gateway.executor.review import review_needed
from gateway.executor.workflow_ref import WorkflowRef
from gateway.policy.decision import MalformedDecision, parse_decision


def decide(**obligations: object) -> object:
    raw = {
        "allow": True,
        "require_approval": True,
        "reasons": ["r"],
        "obligations": {"redact": [], "approvers": ["role:approver"], **obligations},
        "rule": "x",
    }
    return parse_decision(raw, engine="embedded", revision="rev")


def test_the_obligation_is_parsed_strictly_and_shown_only_when_set() -> None:
    assert decide(plan_review=True).obligations.plan_review
    assert decide(plan_review=True).obligations.to_dict()["plan_review"] is True
    assert "plan_review" not in decide().obligations.to_dict()
    with pytest.raises(MalformedDecision):
        decide(plan_review="yes")


WORKFLOW = WorkflowRef(name="w", version="1.0.0", id="wf_1", content_hash="sha256:1")


def test_only_the_obligation_asks_for_a_review_of_the_whole_plan() -> None:
    # require_approval alone keeps its meaning: each step waits for its own approval.
    assert review_needed(decide(), None) is None
    review = review_needed(decide(plan_review=True, approval_ttl_s=60), None)
    assert review is not None
    assert (review.approvers, review.ttl_s, review.source) == (("role:approver",), 60, "policy")


def test_a_workflow_may_ask_for_one_and_policy_wins_when_both_do() -> None:
    asking = WorkflowRef(
        name="w", version="1.0.0", id="wf_1", content_hash="sha256:1", plan_approvers=("role:sre",)
    )
    plain = parse_decision({"allow": True}, engine="embedded", revision="rev")
    assert review_needed(plain, WORKFLOW) is None
    review = review_needed(plain, asking)
    assert review is not None and review.approvers == ("role:sre",) and review.source == "workflow"
    both = review_needed(decide(plan_review=True), asking)
    assert both is not None and both.source == "policy" and both.approvers == ("role:approver",)
    denied = parse_decision({"allow": False}, engine="embedded", revision="rev")
    assert review_needed(denied, asking) is None
