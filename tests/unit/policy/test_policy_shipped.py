"""The shipped policy (policies/) on the embedded engine, fed by build_input."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.input import POLICY_INPUT_VERSION, build_input
from gateway.types import Actor, ClientInfo, Decision, Principal, ToolDefinition

POLICIES = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES)


def tool(name: str, server: str = "demo", risk: Any = "low") -> ToolDefinition:
    return ToolDefinition(
        name=name,
        server=server,
        upstream_tool=name.split("__", 1)[1],
        description=None,
        input_schema={"type": "object"},
        output_schema=None,
        annotations={},
        risk=risk,
        definition_hash="0" * 64,
    )


def call(
    engine: EmbeddedEngine,
    tool_name: str,
    arguments: dict[str, Any],
    *,
    roles: tuple[str, ...] = ("agent",),
    chain: tuple[Actor, ...] = (),
    action: Any = "tools/call",
    risk: Any = "low",
) -> Decision:
    policy_input = build_input(
        principal=Principal(sub="agent:test", iss="dev", roles=roles, act_chain=chain),
        action=action,
        request_id="req_test",
        transport="rest",
        tool=tool(tool_name, risk=risk),
        arguments=arguments,
        client=ClientInfo(ip="127.0.0.1", user_agent="pytest"),
        now=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    )
    return engine.evaluate_sync(policy_input)


def test_build_input_has_the_contract_shape() -> None:
    policy_input = build_input(
        principal=Principal(sub="agent:a", iss="dev", roles=("agent",), act_chain=(Actor("u"),)),
        action="tools/call",
        request_id="req_1",
        transport="mcp",
        tool=tool("demo__echo"),
        arguments={"text": "hi"},
        now=datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC),
    )
    assert policy_input["version"] == POLICY_INPUT_VERSION == 1
    assert policy_input["subject"]["act_chain"] == [{"sub": "u"}]
    assert policy_input["resource"]["tool"] == "demo__echo"
    assert policy_input["resource"]["server"] == "demo"
    assert policy_input["context"]["time"] == "2026-11-21T10:00:00.123Z"
    assert policy_input["context"]["client"] == {"ip": None, "user_agent": None}
    assert policy_input["arguments"] == {"text": "hi"}


def test_agent_may_echo(engine: EmbeddedEngine) -> None:
    decision = call(engine, "demo__echo", {"text": "hello"})
    assert decision.allow and not decision.require_approval
    assert decision.rule == "grant"
    assert decision.engine == "embedded"
    assert decision.revision == engine.revision


def test_no_role_no_calls(engine: EmbeddedEngine) -> None:
    decision = call(engine, "demo__echo", {"text": "hello"}, roles=())
    assert decision.allow is False
    assert decision.rule == "no_grant"
    assert "demo__echo" in decision.reasons[0]


def test_unknown_tool_is_denied(engine: EmbeddedEngine) -> None:
    decision = call(engine, "demo__drop_database", {})
    assert decision.allow is False
    assert decision.rule == "no_grant"


@pytest.mark.parametrize("path", ["notes/today.txt", "a/b/c.md", "caf\u00e9/\u65e5\u672c.txt"])
def test_read_file_inside_sandbox_allowed(engine: EmbeddedEngine, path: str) -> None:
    decision = call(engine, "demo__read_file", {"path": path})
    assert decision.allow is True
    assert decision.rule == "grant"


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../etc/passwd",
        "a/../../b",
        "a/..",
        "..",
        "",
        "a\\b",
        "a\\..\\b",
        "C:\\Windows",
        "a\u0000b",
        "notes/\u0000",
    ],
)
def test_read_file_outside_sandbox_denied(engine: EmbeddedEngine, path: str) -> None:
    decision = call(engine, "demo__read_file", {"path": path})
    assert decision.allow is False
    assert decision.rule == "argument_constraint"
    assert "relative_path" in decision.reasons[0]


@pytest.mark.parametrize("path", [None, 7, ["a"], {"p": "a"}])
def test_read_file_needs_a_string_path(engine: EmbeddedEngine, path: Any) -> None:
    decision = call(engine, "demo__read_file", {"path": path})
    assert decision.allow is False


def test_read_file_without_path_denied(engine: EmbeddedEngine) -> None:
    assert call(engine, "demo__read_file", {}).allow is False


def test_delete_records_needs_an_approver(engine: EmbeddedEngine) -> None:
    decision = call(engine, "demo__delete_records", {"table": "orders", "ids": [1, 2]})
    assert decision.allow is True
    assert decision.require_approval is True
    assert not decision.permits_now
    assert decision.rule == "approval_grant"
    assert decision.obligations.approvers == ("role:approver",)
    assert decision.obligations.approval_ttl_s == 3600
    assert "role:approver" in decision.reasons[0]


@pytest.mark.parametrize("name", ["api_key", "API_KEY", "Password", "token", "authorization"])
def test_secret_argument_names_are_redacted(engine: EmbeddedEngine, name: str) -> None:
    decision = call(engine, "demo__echo", {"text": "hi", name: "s3cret"})
    assert decision.allow is True
    assert decision.obligations.redact == (f"/arguments/{name}",)


def test_every_secret_is_redacted_even_on_deny(engine: EmbeddedEngine) -> None:
    arguments = {"password": "p", "secret": "s", "text": "t"}
    decision = call(engine, "demo__echo", arguments, roles=())
    assert decision.allow is False
    assert decision.obligations.redact == ("/arguments/password", "/arguments/secret")


def test_ordinary_arguments_are_not_redacted(engine: EmbeddedEngine) -> None:
    decision = call(engine, "demo__echo", {"text": "hi", "tokens": 3, "api_key_id": "k"})
    assert decision.obligations.redact == ()


def test_chain_of_four_allowed_five_denied(engine: EmbeddedEngine) -> None:
    four = tuple(Actor(f"agent:{i}") for i in range(4))
    assert call(engine, "demo__echo", {"text": "x"}, chain=four).allow is True
    five = (*four, Actor("user:alice"))
    decision = call(engine, "demo__echo", {"text": "x"}, chain=five)
    assert decision.allow is False
    assert decision.rule == "delegation_chain"
    assert "5 actors" in decision.reasons[0]


def test_list_shows_granted_tools_only(engine: EmbeddedEngine) -> None:
    visible = call(engine, "demo__delete_records", {}, action="tools/list")
    assert visible.allow is True
    hidden = call(engine, "demo__echo", {}, roles=("guest",), action="tools/list")
    assert hidden.allow is False


def test_other_actions_fall_to_default_deny(engine: EmbeddedEngine) -> None:
    decision = call(engine, "demo__echo", {"text": "x"}, action="example/unknown")
    assert decision.allow is False
    assert decision.rule == "default_deny"


def test_high_risk_tools_wait_for_an_approver(engine: EmbeddedEngine) -> None:
    # Destructive tools reach policy as risk "high" (config, or trusted annotations).
    decision = call(engine, "demo__echo", {"text": "x"}, risk="high")
    assert decision.allow and decision.require_approval
    assert decision.rule == "approval_risk"
    assert decision.obligations.approvers == ("role:approver",)
    assert call(engine, "demo__echo", {"text": "x"}, risk="medium").rule == "grant"


def test_nested_secrets_are_redacted(engine: EmbeddedEngine) -> None:
    arguments = {"headers": {"Authorization": "Bearer x"}, "items": [{"token": "t"}]}
    decision = call(engine, "demo__echo", arguments)
    assert decision.obligations.redact == (
        "/arguments/headers/Authorization",
        "/arguments/items/0/token",
    )


def plan_decision(engine: EmbeddedEngine, steps: list[dict[str, Any]]) -> Decision:
    """plan/submit as the executor asks it: the plan and the catalog entry of its tools."""
    names = {"demo__echo", "demo__delete_records", "demo__read_file"}
    risks = {"demo__delete_records": "high"}
    policy_input = build_input(
        principal=Principal(sub="agent:test", iss="dev", roles=("agent",)),
        action="plan/submit",
        request_id="req_plan",
        transport="rest",
        resource={
            "plan": {"version": 1, "steps": steps},
            "tools": {n: tool(n, risk=risks.get(n, "low")).to_policy_resource() for n in names},
        },
    )
    return engine.evaluate_sync(policy_input)


def test_plan_of_granted_tools_is_allowed(engine: EmbeddedEngine) -> None:
    steps = [
        {"id": "s1", "tool": "demo__echo", "arguments": {"text": "hi"}},
        {"id": "t", "sleep_s": 5},
    ]
    assert plan_decision(engine, steps).rule == "plan"


def test_plan_with_a_destructive_step_needs_approval(engine: EmbeddedEngine) -> None:
    decision = plan_decision(engine, [{"id": "s1", "tool": "demo__delete_records"}])
    assert decision.require_approval and decision.rule == "plan_approval"


def test_plan_with_an_unknown_tool_is_refused(engine: EmbeddedEngine) -> None:
    decision = plan_decision(engine, [{"id": "s1", "tool": "demo__drop_database"}])
    assert decision.allow is False
    assert decision.reasons == ("step s1: demo__drop_database is not in the tool catalog",)


def approval_decision(engine: EmbeddedEngine, approver: Principal) -> Decision:
    approval = {
        "id": "apr_1",
        "tool": "demo__delete_records",
        "requester": {"sub": "agent:test", "iss": "dev", "act_chain": [{"sub": "user:alice"}]},
        "approvers": ["role:approver"],
        "status": "pending",
        "arguments_hash": "0" * 64,
    }
    policy_input = build_input(
        principal=approver,
        action="approval/decide",
        request_id="req_decide",
        transport="rest",
        resource={"approval": approval},
    )
    return engine.evaluate_sync(policy_input)


def test_approver_may_decide_but_not_a_party_to_the_request(engine: EmbeddedEngine) -> None:
    approver = Principal(sub="user:carol", iss="dev", roles=("approver",))
    assert approval_decision(engine, approver).rule == "approver"
    alice = Principal(sub="user:alice", iss="dev", roles=("approver",))
    assert approval_decision(engine, alice).rule == "self_approval"
    stranger = Principal(sub="user:mallory", iss="dev", roles=("agent",))
    assert approval_decision(engine, stranger).rule == "not_an_approver"


def test_max_length_never_lets_a_longer_string_through(tmp_path: Path) -> None:
    # count() counts characters (code points), quotes, backslashes and control
    # characters included, as OPA does.
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    data = json.loads((folder / "data.json").read_text())
    data["gateway_data"]["grants"] = [
        {
            "role": "agent",
            "tool": "demo__echo",
            "constraints": [{"kind": "max_length", "argument": "text", "max": 3}],
        }
    ]
    (folder / "data.json").write_text(json.dumps(data))
    engine = EmbeddedEngine(folder)
    for allowed in ["abc", "\u00e9\u00e9\u00e9", "\U0001f600\U0001f600\U0001f600"]:
        assert call(engine, "demo__echo", {"text": allowed}).allow is True, allowed
    for denied in ["abcd", 'ab"c', "a\\bc", "ab\nc", "\u00e9\u00e9\u00e9\u00e9"]:
        assert call(engine, "demo__echo", {"text": denied}).allow is False, denied


def test_very_long_strings_are_decided(engine: EmbeddedEngine) -> None:
    # Half a megabyte and more in every place the policy reads text.
    assert call(engine, "demo__read_file", {"path": "a" * 500_000}).allow is True
    assert call(engine, "demo__read_file", {"path": "a/" * 200_000}).allow is True
    assert call(engine, "demo__echo", {"text": "x" * 900_000, "Token": "t"}).obligations.redact == (
        "/arguments/Token",
    )
