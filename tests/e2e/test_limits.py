"""Limits policy puts on calls, through a real gateway process: a call over a limit is
answered 429 with Retry-After on REST and a JSON-RPC error with the retry hint on MCP,
is not forwarded, is audited as ``call.limited``, and the log verifies with every
limited call accounted for (none reported as "outcome unknown")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from gateway.audit import read_entries
from gateway.audit.export import database_source
from gateway.errors import RATE_LIMITED
from gateway.store import create_engine
from gateway.tlog.verifier import verify_log
from tests.e2e.mcp_client import connect
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually

# A day's window: the test never meets its end, whatever the machine's speed.
WINDOW_S = 86400
LIMITS = [
    {
        "name": "echo-per-agent",
        "per": ["principal"],
        "tools": ["up__echo"],
        "calls": 2,
        "window_s": WINDOW_S,
    },
    {
        "name": "reads-per-agent",
        "per": ["principal", "tool"],
        "actions": ["resources/read"],
        "calls": 1,
        "window_s": WINDOW_S,
    },
    {
        "name": "one-write-per-agent",
        "per": ["principal"],
        "tools": ["up__write"],
        "calls": 1,
        "window_s": WINDOW_S,
    },
    {
        "name": "whoami-per-agent",
        "per": ["principal"],
        "tools": ["up__whoami"],
        "calls": 1,
        "window_s": WINDOW_S,
    },
]
MODERN = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Content-Type": "application/json",
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "limits", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("limits-upstream"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    workdir: Path = tmp_path_factory.mktemp("limits")
    grants = [
        {"role": "agent", "tool": "up__echo"},
        {"role": "agent", "tool": "up__whoami"},
        {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
        {"role": "agent", "resource": "gateway:up/*"},
    ]
    policy = write_policy(workdir, grants, limits=LIMITS)
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=policy,
    ).start()
    yield server
    server.stop()


def rest(gateway: GatewayServer, tool: str, sub: str, arguments: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": arguments},
        headers=gateway.headers(sub=sub),
        timeout=30,
    )


def mcp(gateway: GatewayServer, tool: str, sub: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": ENVELOPE},
    }
    response = httpx.post(
        gateway.mcp_url,
        content=json.dumps(body),
        headers={**gateway.headers(sub=sub), **MODERN, "Mcp-Name": tool},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def forwarded(upstream: McpUpstreamServer, text: str) -> int:
    return sum(1 for c in upstream.calls() if c["arguments"].get("text") == text)


def test_rest_answers_429_with_retry_after_and_forwards_nothing(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    agent, text = f"agent:rest-{uuid.uuid4().hex[:6]}", f"rest-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert rest(gateway, "up__echo", agent, {"text": text}).status_code == 200
    limited = rest(gateway, "up__echo", agent, {"text": text})
    assert limited.status_code == 429, limited.text
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW_S
    body = limited.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "rate_limited"
    assert "limit 'echo-per-agent' (2 calls per 86400 s) is reached" in body["error"]["message"]
    details = body["error"]["details"]
    assert details["limit"] == "echo-per-agent" and details["kind"] == "calls"
    assert details["retry_after_s"] == retry_after and details["max"] == 2
    # Policy allowed it; the limit refused it: the decision is the policy's own.
    assert body["decision"]["allow"] is True
    assert body["decision"]["obligations"]["limits"][0]["name"] == "echo-per-agent"
    assert forwarded(upstream, text) == 2

    # Another principal has a counter of its own; another tool is under another limit.
    assert rest(gateway, "up__echo", agent + "-2", {"text": text}).status_code == 200
    assert rest(gateway, "up__whoami", agent, {}).status_code == 200
    assert rest(gateway, "up__whoami", agent, {}).status_code == 429


def test_mcp_answers_a_json_rpc_error_with_the_retry_hint(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    agent, text = f"agent:mcp-{uuid.uuid4().hex[:6]}", f"mcp-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert "result" in mcp(gateway, "up__echo", agent, {"text": text})
    answer = mcp(gateway, "up__echo", agent, {"text": text})
    assert "result" not in answer
    error = answer["error"]
    assert error["code"] == RATE_LIMITED == -32029
    assert "is reached; the call was not executed" in error["message"]
    assert error["data"]["limit"] == "echo-per-agent" and error["data"]["kind"] == "calls"
    assert 1 <= error["data"]["retry_after_s"] <= WINDOW_S
    assert error["data"]["tool"] == "up__echo"
    assert forwarded(upstream, text) == 2


def test_call_limited_is_audited_and_the_log_verifies(gateway: GatewayServer) -> None:
    agent = f"agent:audit-{uuid.uuid4().hex[:6]}"
    rest(gateway, "up__whoami", agent, {})
    limited = rest(gateway, "up__whoami", agent, {})
    assert limited.status_code == 429
    request_id = limited.json()["request_id"]
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        # call.limited is durable before the 429 is sent: no waiting for it.
        entries = read_entries(engine, ref=request_id)
        assert [e.kind for e in entries] == ["call.attempt", "call.decision", "call.limited"]
        record = entries[2].payload
        assert record["request_id"] == request_id and record["limit"] == "whoami-per-agent"
        assert record["kind"] == "calls" and record["max"] == 1
        assert record["scope"] == {
            "principal": f"{gateway.config['identity']['issuers'][0]['issuer']} {agent}"
        }
        assert entries[2].subject == agent and entries[2].tool == "up__whoami"

        def settled() -> Any:
            # Outcomes of the allowed calls are queued (decision 0005): wait for them.
            report = verify_log(database_source(engine))
            return report if not report.outcome_unknown else None

        report = eventually(settled, "every allowed call settled in the log")
        assert report.ok, [f.message for f in report.faults]
    finally:
        engine.dispose()


@pytest.mark.anyio
async def test_a_read_over_its_limit_is_a_json_rpc_error_through_the_sdk_client(
    gateway: GatewayServer,
) -> None:
    agent = f"agent:read-{uuid.uuid4().hex[:6]}"
    async with connect(gateway.mcp_url, gateway.token(agent), "2026-07-28") as client:
        await client.read_resource("gateway:up/test://static")
        with pytest.raises(MCPError) as caught:
            await client.read_resource("gateway:up/test://static")
        await client.read_resource("gateway:up/test://changing")  # another tool's counter
    error = caught.value.error
    assert error.code == RATE_LIMITED
    assert isinstance(error.data, dict) and error.data["limit"] == "reads-per-agent"
    assert error.data["scope"]["tool"] == "gateway:up/test://static"
    assert 1 <= error.data["retry_after_s"] <= WINDOW_S


def test_a_limited_call_never_spends_an_approval(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    agent, key = f"agent:held-{uuid.uuid4().hex[:6]}", f"k-{uuid.uuid4().hex[:8]}"
    arguments = {"key": key, "value": "v"}

    def write() -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/v1/tools/up__write/call",
            json={"arguments": arguments},
            headers={**gateway.headers(sub=agent), "Prefer": "wait=0"},
            timeout=30,
        )

    held = write()  # counted: the one call of the window, held for approval
    assert held.status_code == 202, held.text
    approval_id = held.json()["approval_id"]
    approver = gateway.headers(sub="user:bob", roles=("approver",))
    decided = httpx.post(
        f"{gateway.url}/v1/approvals/{approval_id}/approve", headers=approver, timeout=30
    )
    assert decided.status_code == 200, decided.text

    # Approved, but the retry that would run it is over the limit: refused before the
    # approval gate, so the approval is still there to run once the window allows.
    limited = write()
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["details"]["limit"] == "one-write-per-agent"
    shown = httpx.get(f"{gateway.url}/v1/approvals/{approval_id}", headers=approver, timeout=30)
    assert shown.json()["status"] == "approved" and shown.json()["execution_state"] == "none"
    assert not any(c["arguments"].get("key") == key for c in upstream.calls())
