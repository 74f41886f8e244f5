"""The offline run: branches, skips, templates from recorded outputs, denials, recorded
errors and missing recordings; with a test double for policy."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.executor.plan import parse_plan
from gateway.types import Decision, Obligations
from gateway.workflows.scenario import Recorded
from gateway.workflows.simulate import by_step, simulate

pytestmark = pytest.mark.anyio

PLAN = parse_plan(
    {
        "inputs": {"type": "object"},
        "steps": [
            {"id": "look", "tool": "up__echo", "arguments": {"text": "${{ inputs.q }}"}},
            {
                "id": "big",
                "tool": "up__write",
                "needs": ["look"],
                "when": "steps.look.output.size > `10`",
                "arguments": {"key": "${{ steps.look.output.key }}"},
            },
            {"id": "after", "tool": "up__echo", "needs": ["big"], "arguments": {"text": "x"}},
            {"id": "gate", "approval": {"approvers": ["role:sre"]}, "needs": ["look"]},
        ],
    }
)


class Policy:
    """A test double: allows everything, up__write once approved, denies `denied`."""

    def __init__(self, denied: str = "") -> None:
        self.denied = denied
        self.asked: list[tuple[str, dict[str, Any], str]] = []

    async def __call__(self, tool: str, arguments: dict[str, Any], step_id: str) -> Decision:
        self.asked.append((tool, arguments, step_id))
        allow = tool != self.denied
        approval = tool == "up__write"
        return Decision(
            allow=allow,
            require_approval=approval,
            reasons=("because",),
            obligations=Obligations(),
            rule="r",
            engine="test",
            revision="t",
        )


def rec(**kwargs: Any) -> Recorded:
    return Recorded(**kwargs)


async def test_a_branch_taken_renders_from_recorded_outputs() -> None:
    policy = Policy()
    results = {
        "look": rec(output={"size": 12, "key": "k"}),
        "big": rec(output={}),
        "after": rec(output={}),
    }
    outcome = await simulate(PLAN, {"q": "hi"}, by_step(results), policy)
    assert outcome["status"] == "succeeded"
    assert policy.asked[0] == ("up__echo", {"text": "hi"}, "look")
    assert outcome["steps"]["big"]["arguments"] == {"key": "k"}
    assert outcome["steps"]["big"]["approval_needed"] is True
    assert outcome["steps"]["gate"]["approval_needed"] is True


async def test_a_branch_not_taken_skips_its_dependents() -> None:
    recorded = by_step({"look": rec(output={"size": 1})})
    outcome = await simulate(PLAN, {"q": "hi"}, recorded, Policy())
    assert outcome["status"] == "succeeded"
    assert outcome["steps"]["big"]["status"] == "skipped"
    assert outcome["steps"]["after"]["status"] == "skipped"


async def test_denials_recorded_errors_and_missing_recordings_fail_the_run() -> None:
    denied = await simulate(PLAN, {"q": "hi"}, by_step({}), Policy(denied="up__echo"))
    assert denied["error"]["cause"]["code"] == "denied"
    assert {s["status"] for k, s in denied["steps"].items() if k != "look"} == {"not_run"}
    missing = await simulate(PLAN, {"q": "hi"}, by_step({}), Policy())
    assert missing["steps"]["look"]["error"]["code"] == "no_recording"
    error = {"code": "tool_error", "message": "down"}
    broke = await simulate(PLAN, {"q": "hi"}, by_step({"look": rec(error=error)}), Policy())
    assert broke["status"] == "failed" and broke["error"]["step"] == "look"
    # As in the runner: a `when` over an output without the field is false.
    not_an_object = by_step({"look": rec(output="not an object")})
    odd = await simulate(PLAN, {"q": "hi"}, not_an_object, Policy())
    assert odd["steps"]["big"]["status"] == "skipped"
