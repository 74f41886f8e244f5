"""parse_decision: the policy result contract (architecture.md §5) is exact; else it raises."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import PolicyError
from gateway.policy.decision import MalformedDecision, parse_decision
from gateway.types import Obligations


def parse(raw: Any) -> Any:
    return parse_decision(raw, engine="embedded", revision="sha256:abc", decision_id="d-1")


def test_minimal_decision() -> None:
    decision = parse({"allow": True})
    assert decision.allow is True
    assert decision.require_approval is False
    assert decision.reasons == ()
    assert decision.obligations == Obligations()
    assert decision.rule is None
    assert decision.permits_now
    assert (decision.engine, decision.revision, decision.decision_id) == (
        "embedded",
        "sha256:abc",
        "d-1",
    )


def test_full_decision() -> None:
    decision = parse(
        {
            "allow": True,
            "require_approval": True,
            "reasons": ["needs a human", "risk high"],
            "obligations": {
                "redact": ["/arguments/api_key", "/arguments/items/*/secret"],
                "approvers": ["role:security", "user:bob"],
                "approval_ttl_s": 3600,
            },
            "rule": "approval_grant",
            "debug": {"policy": "may carry extra fields"},
        }
    )
    assert decision.allow and decision.require_approval
    assert not decision.permits_now
    assert decision.reasons == ("needs a human", "risk high")
    assert decision.obligations == Obligations(
        redact=("/arguments/api_key", "/arguments/items/*/secret"),
        approvers=("role:security", "user:bob"),
        approval_ttl_s=3600,
    )
    assert decision.rule == "approval_grant"


def test_deny_is_a_valid_decision() -> None:
    decision = parse({"allow": False, "reasons": ["no"]})
    assert decision.allow is False
    assert decision.reasons == ("no",)


def test_undefined_result_is_malformed() -> None:
    with pytest.raises(MalformedDecision, match="undefined"):
        parse(None)


def test_malformed_decision_is_a_policy_error() -> None:
    assert issubclass(MalformedDecision, PolicyError)
    with pytest.raises(PolicyError):
        parse(None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["allow", True], "result"),
        ("allow", "result"),
        (True, "result"),
        ({}, "allow"),
        ({"deny": False}, "allow"),
        ({"allow": "true"}, "allow"),
        ({"allow": 1}, "allow"),
        ({"allow": None}, "allow"),
        ({"allow": False, "require_approval": "yes"}, "require_approval"),
        ({"allow": False, "reasons": "because"}, "reasons"),
        ({"allow": False, "reasons": ["ok", 3]}, "reasons.1"),
        ({"allow": False, "rule": 7}, "rule"),
        ({"allow": False, "obligations": []}, "obligations"),
        ({"allow": True, "obligations": {"approvers": "role:x"}}, "obligations.approvers"),
        ({"allow": True, "obligations": {"approvers": [1]}}, "obligations.approvers.0"),
        ({"allow": True, "obligations": {"redact": "/arguments/x"}}, "obligations.redact"),
        ({"allow": True, "obligations": {"approval_ttl_s": "3600"}}, "obligations.approval_ttl_s"),
        ({"allow": True, "obligations": {"approval_ttl_s": 1.5}}, "obligations.approval_ttl_s"),
        ({"allow": True, "obligations": {"approval_ttl_s": True}}, "obligations.approval_ttl_s"),
        ({"allow": True, "obligations": {"approval_ttl_s": 0}}, "obligations.approval_ttl_s"),
    ],
)
def test_malformed_results_name_what_is_wrong(raw: Any, expected: str) -> None:
    with pytest.raises(MalformedDecision) as caught:
        parse(raw)
    message = caught.value.message
    assert message.startswith("policy result is malformed: ")
    assert f": {expected}: " in message


@pytest.mark.parametrize("path", ["arguments/api_key", "", "*/secret"])
def test_redact_path_must_be_a_json_pointer(path: str) -> None:
    with pytest.raises(MalformedDecision) as caught:
        parse({"allow": True, "obligations": {"redact": ["/arguments/ok", path]}})
    assert repr(path) in caught.value.message
    assert "not a JSON pointer" in caught.value.message


def test_error_code_is_stable() -> None:
    with pytest.raises(MalformedDecision) as caught:
        parse({"allow": "true"})
    assert caught.value.code == "policy_result_malformed"
    assert caught.value.http_status == 503


def test_limits_are_parsed_and_their_scope_ordered() -> None:
    decision = parse(
        {
            "allow": True,
            "obligations": {
                "limits": [
                    {
                        "name": "a",
                        "scope": {"tool": "t", "principal": "p"},
                        "calls": 5,
                        "window_s": 60,
                    },
                    {"name": "b", "scope": {}, "concurrent": 2},
                    {"name": "c", "calls": 1, "window_s": 1, "concurrent": 1},
                ]
            },
        }
    )
    a, b, c = decision.obligations.limits
    assert list(a.scope) == ["principal", "tool"] and (a.calls, a.window_s) == (5, 60)
    assert a.concurrent is None and b.concurrent == 2 and b.calls is None
    assert c.scope == {} and (c.calls, c.window_s, c.concurrent) == (1, 1, 1)
    assert decision.to_dict()["obligations"]["limits"][1] == {
        "name": "b",
        "scope": {},
        "concurrent": 2,
    }
    assert "limits" not in parse({"allow": True}).to_dict()["obligations"]


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"name": "a", "calls": 5}, "calls and window_s go together"),
        ({"name": "a", "window_s": 5}, "calls and window_s go together"),
        ({"name": "a"}, "needs calls with window_s, or concurrent"),
        ({"name": "a", "concurrent": 0}, "greater than 0"),
        ({"name": "a", "concurrent": 1.5}, "valid integer"),
        ({"name": "a", "concurrent": True}, "valid integer"),
        ({"name": "a", "calls": 1, "window_s": 32 * 86400}, "less than or equal"),
        ({"name": "", "concurrent": 1}, "at least 1 character"),
        ({"name": "a", "concurrent": 1, "scope": {"region": None}}, "valid string"),
        ({"name": "a", "concurrent": 1, "window": 60}, "Extra inputs"),
        ({"name": "a", "concurrent": 1, "scope": {"p": "x" * 513}}, "too long"),
    ],
)
def test_a_malformed_limit_is_a_malformed_decision(limit: dict[str, Any], problem: str) -> None:
    # A limit that cannot be counted as written is never ignored: fail closed.
    with pytest.raises(MalformedDecision, match=problem):
        parse({"allow": True, "obligations": {"limits": [limit]}})


def test_one_name_and_scope_twice_is_malformed() -> None:
    limits = [
        {"name": "a", "scope": {"p": "x"}, "concurrent": 1},
        {"name": "a", "scope": {"p": "x"}, "calls": 2, "window_s": 60},
    ]
    with pytest.raises(MalformedDecision, match="limit 'a' is named twice"):
        parse({"allow": True, "obligations": {"limits": limits}})
    limits[1]["scope"] = {"p": "y"}  # another scope: another counter
    assert len(parse({"allow": True, "obligations": {"limits": limits}}).obligations.limits) == 2


def test_too_many_limits_are_malformed() -> None:
    limits = [{"name": f"l{i}", "concurrent": 1} for i in range(17)]
    with pytest.raises(MalformedDecision, match="at most 16"):
        parse({"allow": True, "obligations": {"limits": limits}})
