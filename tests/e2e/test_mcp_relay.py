"""An upstream's requests for client input — elicitation, sampling, roots — relayed to
the MCP SDK's client through a real gateway process, in both eras: a request on the
call's stream in a 2025-11-25 session, an ``input_required`` result with a sealed
``requestState`` at 2026-07-28 (docs/mcp.md, "Requests for client input"). Policy
decides each one (here: sampling is not granted), a client that did not declare a
capability is never asked, and forged, tampered, replayed or someone else's states are
refused and audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from sqlalchemy import Engine

from gateway.audit import read_entries
from tests.e2e.conftest import conformance_gateway
from tests.e2e.mcp_client import ERAS, connect
from tests.support.processes import GatewayServer

pytestmark = pytest.mark.anyio

GRANTS = [
    {"role": "agent", "tool": "conf__*"},
    {"role": "agent", "prompt": "conf__test_input_required_result_prompt"},
    {"role": "agent", "client_input": "elicitation/create"},
    {"role": "agent", "client_input": "roots/list"},
    # No sampling grant: every sampling request is denied.
]
MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("relay")


@pytest.fixture(scope="module")
def gateway(workdir: Path) -> Iterator[GatewayServer]:
    with conformance_gateway(workdir, GRANTS) as server:
        yield server


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(item, "text", "") for item in result.content)


def _entries(database: Engine, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == kind and e.payload]


@pytest.mark.parametrize("era", ERAS)
async def test_the_client_answers_an_upstream_elicitation(
    gateway: GatewayServer, database: Engine, era: str
) -> None:
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"response": f"yes-{era}"})

    async with connect(gateway.mcp_url, gateway.token(), era, elicitation_callback=elicit) as c:
        result = await c.call_tool("conf__test_elicitation", {"message": f"Proceed {era}?"})
    assert not result.is_error, _text(result)
    assert f"yes-{era}" in _text(result)
    assert [p.message for p in asked] == [f"Proceed {era}?"]
    decisions = [
        d for d in _entries(database, "relay.decision") if d["method"] == "elicitation/create"
    ]
    assert any(d["decision"]["allow"] for d in decisions)
    answered = {a["relay_id"]: a for a in _entries(database, "relay.answer")}
    relayed = [answered[d["relay_id"]] for d in decisions if d["relay_id"] in answered]
    assert any(a["status"] == "answered" and a["action"] == "accept" for a in relayed)
    # The answer itself is recorded by hash only.
    assert all("content" not in a for a in relayed)


@pytest.mark.parametrize("era", ERAS)
async def test_the_client_answers_an_upstream_elicitation_for_a_prompt(
    gateway: GatewayServer, era: str
) -> None:
    """A ``prompts/get`` goes out lean at 2026-07-28 (docs/decisions/0026); its
    ``input_required`` answer is relayed as a tool call's is."""
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"context": f"ctx-{era}"})

    async with connect(gateway.mcp_url, gateway.token(), era, elicitation_callback=elicit) as c:
        result = await c.get_prompt("conf__test_input_required_result_prompt", {})
    texts = [getattr(m.content, "text", "") for m in result.messages]
    assert texts == [f"Prompt with context: ctx-{era}"]
    assert [p.message for p in asked] == ["What context should the prompt use?"]


@pytest.mark.parametrize("era", ERAS)
async def test_the_client_answers_an_upstream_roots_request(
    gateway: GatewayServer, era: str
) -> None:
    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///work/{era}", name="w")])

    async with connect(gateway.mcp_url, gateway.token(), era, list_roots_callback=roots) as c:
        result = await c.call_tool("conf__test_input_required_result_list_roots", {})
    assert not result.is_error, _text(result)
    assert f"file:///work/{era}" in _text(result)


@pytest.mark.parametrize("era", ERAS)
async def test_denied_sampling_never_reaches_the_client(
    gateway: GatewayServer, database: Engine, era: str
) -> None:
    sampled: list[Any] = []

    async def sample(context: Any, params: Any) -> types.CreateMessageResult:
        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="never"), model="m"
        )

    async with connect(gateway.mcp_url, gateway.token(), era, sampling_callback=sample) as c:
        result = await c.call_tool("conf__test_sampling", {"prompt": f"sample-{era}"})
    assert sampled == []
    assert "never" not in _text(result)
    denied = [
        d
        for d in _entries(database, "relay.decision")
        if d["method"] == "sampling/createMessage" and not d["decision"]["allow"]
    ]
    assert denied and denied[-1]["decision"]["rule"] == "no_client_input_grant"


@pytest.mark.parametrize("era", ERAS)
async def test_a_client_without_the_capability_is_never_asked(
    gateway: GatewayServer, database: Engine, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        result = await client.call_tool("conf__test_elicitation", {"message": f"nocap-{era}"})
    # An answer, not a hang: the upstream was refused and said so its own way.
    assert result is not None
    refused = [
        d
        for d in _entries(database, "relay.decision")
        if d["method"] == "elicitation/create" and d["decision"]["engine"] == "gateway"
    ]
    assert refused and "did not declare the capability elicitation.form" in " ".join(
        refused[-1]["decision"]["reasons"]
    )


# --- the sealed requestState, on the wire (2026-07-28) ---------------------------------


def _call(
    gateway: GatewayServer, token: str, params: dict[str, Any], request_id: int = 1
) -> dict[str, Any]:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {**params, "_meta": envelope},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": params["name"],
    }
    response = httpx.post(gateway.mcp_url, json=body, headers=headers, timeout=30)
    answer: dict[str, Any] = response.json()
    return answer


NAME = {"name": "conf__test_input_required_result_elicitation", "arguments": {}}
ANSWER = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}


def _first_round(gateway: GatewayServer, token: str) -> dict[str, Any]:
    result = _call(gateway, token, NAME)["result"]
    assert result["resultType"] == "input_required"
    assert list(result["inputRequests"]) == ["user_name"]
    assert result["requestState"].startswith("agw1.")
    return result


def test_a_state_is_accepted_once_and_replays_are_refused(
    gateway: GatewayServer, database: Engine
) -> None:
    token = gateway.token()
    state = _first_round(gateway, token)["requestState"]
    resumed = _call(gateway, token, {**NAME, "inputResponses": ANSWER, "requestState": state})
    assert resumed["result"]["resultType"] == "complete", resumed
    assert "Ada" in resumed["result"]["content"][0]["text"]
    replayed = _call(gateway, token, {**NAME, "inputResponses": ANSWER, "requestState": state})
    assert replayed["error"]["code"] == -32602
    assert replayed["error"]["data"]["reason"] == "replayed"
    reasons = [e["reason"] for e in _entries(database, "relay.state_refused")]
    assert "replayed" in reasons


def test_forged_tampered_and_foreign_states_are_refused(
    gateway: GatewayServer, database: Engine
) -> None:
    token = gateway.token()
    state = _first_round(gateway, token)["requestState"]
    tampered = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
    cases = {
        "malformed": "v1.forged-by-the-client",
        "tampered": tampered,
    }
    for reason, forged in cases.items():
        refused = _call(gateway, token, {**NAME, "inputResponses": ANSWER, "requestState": forged})
        assert refused["error"]["code"] == -32602, refused
        assert refused["error"]["data"]["reason"] == reason
    other = gateway.token("agent:mallory")
    stolen = _call(gateway, other, {**NAME, "inputResponses": ANSWER, "requestState": state})
    assert stolen["error"]["data"]["reason"] == "other_principal"
    elsewhere = {"name": "conf__test_simple_text", "arguments": {}}
    moved = _call(gateway, token, {**elsewhere, "inputResponses": ANSWER, "requestState": state})
    assert moved["error"]["data"]["reason"] == "other_request"
    # None of these used the state: its owner still resumes with it, once.
    resumed = _call(gateway, token, {**NAME, "inputResponses": ANSWER, "requestState": state})
    assert resumed["result"]["resultType"] == "complete", resumed
    refusals = {e["reason"] for e in _entries(database, "relay.state_refused")}
    assert {"malformed", "tampered", "other_principal", "other_request"} <= refusals
