"""An upstream's own task that waits for input (``input_required``), through the
gateway (docs/decisions/0041), end to end: a real gateway process in front of our
tasks-serving test upstream in both eras (`tests.support.tasks_upstream`, its ``ask``
task asks for a confirmation), and clients of both eras: the MCP SDK's own 2025-11-25
session answering the elicitation with its callback, raw 2026-07-28 requests.

Each case proves what reached the upstream from its call log (the answer, or the
refusal in its place), what the client was asked (or that it never was), the relay's
entries in the audit log, and that the log verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from gateway.audit import read_entries
from gateway.store import create_engine
from tests.e2e.mcp_client import connect
from tests.e2e.test_mcp_task_passthrough import (
    ENVELOPE,
    UPSTREAMS,
    LegacyClient,
    ModernClient,
    TasksUpstream,
    _audit,
    _outcomes,
    _verified,
    started_upstreams,
    tasks_gateway,
)
from tests.support.processes import GatewayServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

RELATED = "io.modelcontextprotocol/related-task"
GRANTS = [
    {"role": "agent", "tool": "new__ask"},
    {"role": "agent", "tool": "old__ask"},
    {"role": "agent", "client_input": "elicitation/create"},
    # May call the tools, may not be asked anything by upstreams.
    {"role": "unasked", "tool": "new__ask"},
    {"role": "unasked", "tool": "old__ask"},
]
# A 2026-07-28 request declaring the tasks extension and form elicitation.
ASKABLE = {
    **ENVELOPE,
    "io.modelcontextprotocol/clientCapabilities": {
        **ENVELOPE["io.modelcontextprotocol/clientCapabilities"],
        "elicitation": {"form": {}},
    },
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("task-input")


@pytest.fixture(scope="module")
def upstreams(workdir: Path) -> Iterator[dict[str, TasksUpstream]]:
    with started_upstreams(workdir) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(workdir: Path, upstreams: dict[str, TasksUpstream]) -> Iterator[GatewayServer]:
    with tasks_gateway(workdir, upstreams, GRANTS) as server:
        yield server


def askable(gateway: GatewayServer, token: str, *, elicitation: bool = True) -> ModernClient:
    """2026-07-28 raw requests declaring the tasks extension (and form elicitation)."""
    return ModernClient(gateway, token, ASKABLE if elicitation else ENVELOPE)


def _relays(gateway: GatewayServer, request_id: str) -> tuple[list[Any], list[Any]]:
    """The call's relay.decision and relay.answer payloads."""
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        entries = [e for e in read_entries(engine) if e.payload]
    finally:
        engine.dispose()
    decisions = [
        e.payload
        for e in entries
        if e.kind == "relay.decision" and e.payload["request_id"] == request_id
    ]
    answers = [
        e.payload
        for e in entries
        if e.kind == "relay.answer" and e.payload["request_id"] == request_id
    ]
    return decisions, answers


def _upstream_task(upstream: TasksUpstream, topic: str) -> str:
    return next(c["taskId"] for c in upstream.calls("task.created") if c["topic"] == topic)


def _answered(upstream: TasksUpstream, upstream_id: str) -> list[dict[str, Any]]:
    return [c for c in upstream.calls("task.answered") if c["taskId"] == upstream_id]


def _text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


# --- 2025-11-25 clients: asked on the stream of their tasks/result ----------------------


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_a_session_client_answers_what_the_upstream_task_waits_for(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], name: str
) -> None:
    upstream = upstreams[name]
    topic = f"confirm-{name}"
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"note": f"yes {name}"})

    token = gateway.token("agent:owner")
    async with connect(gateway.mcp_url, token, "legacy", elicitation_callback=elicit) as client:
        owner = LegacyClient(client)
        created = await owner.request(
            "tools/call", {"name": f"{name}__ask", "arguments": {"topic": topic}, "task": {}}
        )
        task_id = created["result"]["task"]["taskId"]
        request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
        got = await owner.request("tasks/get", {"taskId": task_id})
        assert got["result"]["status"] == "input_required", got  # no longer shown working
        assert asked == []  # a tasks/get asks nothing: the tasks/result does
        result = await owner.request("tasks/result", {"taskId": task_id})
    assert _text(result["result"]) == f"confirmed {topic}: yes {name}", result
    assert result["result"]["_meta"][RELATED]["taskId"] == task_id
    # The client was asked once, about the gateway's task, never the upstream's id.
    upstream_id = _upstream_task(upstream, topic)
    assert [p.message for p in asked] == [f"Confirm research on {topic}?"]
    meta = asked[0].meta
    meta = meta if isinstance(meta, dict) else meta.model_dump(by_alias=True)
    assert meta[RELATED] == {"taskId": task_id}
    assert upstream_id not in str(asked[0])
    # The answer reached the upstream, which completed its task with it.
    assert [a["answer"]["action"] for a in _answered(upstream, upstream_id)] == ["accept"]
    decisions, answers = _relays(gateway, request_id)
    assert [d["method"] for d in decisions] == ["elicitation/create"]
    assert decisions[0]["decision"]["allow"] is True
    assert decisions[0]["upstream"] == name
    answered = await eventually_async(
        lambda: _relays(gateway, request_id)[1], "the relay's answer entry"
    )
    assert [(a["status"], a["action"]) for a in answered] == [("answered", "accept")]
    assert "yes" not in str(answers)  # recorded by hash only
    outcomes = await _outcomes(gateway, request_id)
    assert [o.payload["status"] for o in outcomes] == ["ok"]
    _verified(gateway)


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_a_request_policy_refuses_reaches_the_upstream_as_a_refusal_never_the_client(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], name: str
) -> None:
    upstream = upstreams[name]
    topic = f"refused-{name}"
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"note": "never"})

    token = gateway.token("agent:unasked", roles=("unasked",))
    async with connect(gateway.mcp_url, token, "legacy", elicitation_callback=elicit) as client:
        caller = LegacyClient(client)
        created = await caller.request(
            "tools/call", {"name": f"{name}__ask", "arguments": {"topic": topic}, "task": {}}
        )
        task_id = created["result"]["task"]["taskId"]
        request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
        result = await caller.request("tasks/result", {"taskId": task_id})
        got = await caller.request("tasks/get", {"taskId": task_id})
    assert asked == []
    assert result["result"]["isError"] is True, result
    assert got["result"]["status"] == "failed", got
    upstream_id = _upstream_task(upstream, topic)
    if name == "old":  # the error answering its request, in place of an answer
        refusals = _answered(upstream, upstream_id)
        assert len(refusals) == 1 and refusals[0]["answer"] is None
        assert "refused" in refusals[0]["error"]
    else:  # tasks/update carries answers only: its task is cancelled
        assert not _answered(upstream, upstream_id)
        assert [c for c in upstream.calls("tasks/cancel") if c["taskId"] == upstream_id]
        assert "no grant" in got["result"]["statusMessage"]
    decisions, _ = _relays(gateway, request_id)
    assert [d["decision"]["allow"] for d in decisions] == [False]
    assert decisions[0]["decision"]["rule"] == "no_client_input_grant"
    _verified(gateway)


async def test_a_client_that_did_not_declare_elicitation_is_never_asked(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
) -> None:
    """No elicitation capability: the gateway refuses the upstream's request itself
    (policy not asked), the upstream's task ends, nothing hangs."""
    upstream = upstreams["old"]
    topic = "undeclared-old"
    async with connect(gateway.mcp_url, gateway.token("agent:owner"), "legacy") as client:
        caller = LegacyClient(client)
        created = await caller.request(
            "tools/call", {"name": "old__ask", "arguments": {"topic": topic}, "task": {}}
        )
        task_id = created["result"]["task"]["taskId"]
        request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
        with anyio.fail_after(30):  # a bound, far above what answering takes
            result = await caller.request("tasks/result", {"taskId": task_id})
    assert result["result"]["isError"] is True, result
    refusals = _answered(upstream, _upstream_task(upstream, topic))
    assert len(refusals) == 1 and "did not declare" in refusals[0]["error"]
    decisions, _ = _relays(gateway, request_id)
    assert [d["decision"]["allow"] for d in decisions] == [False]
    assert "did not declare" in decisions[0]["decision"]["reasons"][0]
    _verified(gateway)


# --- 2026-07-28 clients: shown in tasks/get, answered with tasks/update ----------------


async def test_a_modern_client_is_shown_what_the_task_waits_for_and_answers_it(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
) -> None:
    upstream = upstreams["new"]
    topic = "modern-confirm"
    owner = askable(gateway, gateway.token("agent:owner"))
    other = askable(gateway, gateway.token("agent:other"))
    created = await owner.request("tools/call", {"name": "new__ask", "arguments": {"topic": topic}})
    task_id = created["result"]["taskId"]
    request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    upstream_id = _upstream_task(upstream, topic)
    first = await owner.request("tasks/get", {"taskId": task_id})
    again = await owner.request("tasks/get", {"taskId": task_id})
    task = first["result"]
    assert task["status"] == "input_required", first
    question = task["inputRequests"]["confirm"]
    assert question["method"] == "elicitation/create"
    assert question["params"]["message"] == f"Confirm research on {topic}?"
    assert question["params"]["_meta"][RELATED] == {"taskId": task_id}
    assert upstream_id not in str(first)
    assert again["result"]["inputRequests"] == task["inputRequests"]
    decisions, _ = _relays(gateway, request_id)
    assert len(decisions) == 1 and decisions[0]["decision"]["allow"]  # decided once a round

    # Another principal's answer is refused as for an unknown task, and audited.
    answer = {"confirm": {"action": "accept", "content": {"note": "from another"}}}
    forged = await other.request("tasks/update", {"taskId": task_id, "inputResponses": answer})
    assert forged["error"]["code"] == -32602, forged
    assert not [c for c in upstream.calls("tasks/update") if c["taskId"] == upstream_id]
    refused = _audit(gateway, "task.refused", task_id)
    assert [(e.payload["method"], e.payload["reason"]) for e in refused] == [
        ("tasks/update", "not_owner")
    ]

    answer = {"confirm": {"action": "accept", "content": {"note": "go"}}}
    updated = await owner.request("tasks/update", {"taskId": task_id, "inputResponses": answer})
    assert updated["result"]["resultType"] == "complete", updated  # an acknowledgement
    updates = [c for c in upstream.calls("tasks/update") if c["taskId"] == upstream_id]
    assert [c["inputResponses"] for c in updates] == [answer]
    done = await owner.request("tasks/get", {"taskId": task_id})
    assert done["result"]["status"] == "completed", done
    assert _text(done["result"]["result"]) == f"confirmed {topic}: go"
    answered = await eventually_async(
        lambda: _relays(gateway, request_id)[1], "the relay's answer entry"
    )
    assert [(a["status"], a["action"]) for a in answered] == [("answered", "accept")]
    assert len(await _outcomes(gateway, request_id)) == 1
    _verified(gateway)


@pytest.mark.parametrize("elicitation", [True, False])
async def test_a_modern_client_policy_or_capability_refuses_is_never_shown_the_request(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], elicitation: bool
) -> None:
    upstream = upstreams["new"]
    topic = f"modern-refused-{elicitation}"
    if elicitation:  # declared, but policy grants no client input to this role
        caller = askable(gateway, gateway.token("agent:unasked", roles=("unasked",)))
    else:  # allowed by policy, but the request does not declare elicitation
        caller = askable(gateway, gateway.token("agent:owner"), elicitation=False)
    created = await caller.request(
        "tools/call", {"name": "new__ask", "arguments": {"topic": topic}}
    )
    task_id = created["result"]["taskId"]
    request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    got = await caller.request("tasks/get", {"taskId": task_id})
    assert got["result"]["status"] == "failed", got
    assert "inputRequests" not in got["result"]
    upstream_id = _upstream_task(upstream, topic)
    assert [c for c in upstream.calls("tasks/cancel") if c["taskId"] == upstream_id]
    assert not [c for c in upstream.calls("tasks/update") if c["taskId"] == upstream_id]
    decisions, _ = _relays(gateway, request_id)
    assert [d["decision"]["allow"] for d in decisions] == [False]
    again = await caller.request("tasks/get", {"taskId": task_id})
    assert again["result"]["status"] == "failed"
    assert len(await _outcomes(gateway, request_id)) == 1
    _verified(gateway)
