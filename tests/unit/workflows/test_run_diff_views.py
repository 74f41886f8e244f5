"""`diff_runs` on run views: approvals, tool contracts, policy and steps added or removed."""

from __future__ import annotations

from typing import Any

from gateway.workflows.run_diff import diff_runs


def run(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "run_a",
        "status": "succeeded",
        "error": None,
        "plan_hash": "sha256:p",
        "inputs": {"x": 1},
        "review": None,
        "provenance": {
            "policy_engine": "embedded",
            "policy_revision": "r1",
            "tools": {"up__echo": "h1"},
            "gateway_version": "0.1.0",
            "workflow": None,
        },
        "steps": [
            {
                "id": "s1",
                "kind": "tool",
                "tool": "up__echo",
                "status": "succeeded",
                "arguments": {"text": "a"},
                "output": {"result": "a"},
                "decision": {"allow": True, "require_approval": False, "rule": "grant"},
                "approval_id": None,
                "error": None,
                "attempts": [{"request_id": "req_1"}],
            }
        ],
    }
    base.update(changes)
    return base


def test_ids_and_times_are_not_differences() -> None:
    other = run(id="run_b")
    other["steps"][0]["attempts"] = [{"request_id": "req_2"}]
    assert diff_runs(run(), other) == {}


def test_policy_tools_approvals_and_steps() -> None:
    b = run(
        review={"status": "approved", "approval_id": "apr_1"},
        provenance={
            "policy_engine": "embedded",
            "policy_revision": "r2",
            "tools": {"up__echo": "h2", "up__write": "h3"},
            "gateway_version": "0.1.0",
            "workflow": None,
        },
    )
    b["steps"][0]["decision"] = {"allow": True, "require_approval": True, "rule": "approval_grant"}
    b["steps"][0]["approval_id"] = "apr_2"
    b["steps"].append({"id": "s2", "kind": "sleep", "status": "succeeded"})
    differences = diff_runs(run(), b)
    assert differences["policy"] == {
        "a": {"engine": "embedded", "revision": "r1"},
        "b": {"engine": "embedded", "revision": "r2"},
    }
    assert differences["tools"] == {
        "added": {"up__write": "h3"},
        "changed": {"up__echo": {"a": "h1", "b": "h2"}},
    }
    assert differences["approvals"] == {
        "plan_review": {"a": None, "b": "approved"},
        "steps": {"s1": {"a": None, "b": {"approved_by": None}}},
    }
    assert differences["steps"]["added"] == ["s2"]
    assert differences["steps"]["changed"]["s1"]["decision"]["b"]["rule"] == "approval_grant"
