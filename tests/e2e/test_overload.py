"""Overload is not a denial: a call whose decision cannot start in time gets 503 with
Retry-After (MCP: a JSON-RPC error), is audited as unavailability, and is not
forwarded; the call that holds the engine is decided and runs.

The engine is held still for real: the OPA sidecar's policy calls `http.send` to a
server of this test, which answers only when the test lets it. The gateway's queue
admits one evaluation and none waiting, so the second call finds it full.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.audit import read_entries
from gateway.errors import SERVER_BUSY
from gateway.store import create_engine
from gateway.types import UNAVAILABLE_RULE
from tests.support.gate import Gate
from tests.support.opa import OpaServer
from tests.support.processes import GatewayServer, McpUpstreamServer

HOLD_POLICY = """package gateway

import rego.v1

default decision := {"allow": true, "reasons": ["ok"]}

decision := {"allow": true, "reasons": ["held, then allowed"]} if {
	input.arguments.text == "hold"
	http.send({"method": "GET", "url": "%s", "timeout": "120s"}).status_code == 200
}
"""
MODERN = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "up__echo",
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "overload", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    held = Gate()
    yield held
    held.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, gate: Gate) -> Iterator[GatewayServer]:
    workdir = tmp_path_factory.mktemp("overload")
    upstream = McpUpstreamServer.start(workdir)
    policy = workdir / "policy"
    policy.mkdir()
    (policy / "hold.rego").write_text(HOLD_POLICY % gate.url)
    opa = OpaServer([policy], workdir / "opa.log").start()
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy_config={
            "engine": "opa",
            "url": opa.url,
            "timeout_ms": 120_000,
            "queue": {"concurrency": 1, "size": 0},
            "conformance": {"on_start": "off"},
        },
    )
    server.config["approvals"] = {"enabled": False}
    server.start()
    yield server
    server.stop()
    opa.stop()
    upstream.process.stop()


def rest(gateway: GatewayServer, text: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/up__echo/call",
        json={"arguments": {"text": text}},
        headers=gateway.headers(),
        timeout=150,
    )


def test_a_decision_that_cannot_start_is_503_not_a_denial(
    gateway: GatewayServer, gate: Gate
) -> None:
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(rest, gateway, "hold")
        assert gate.entered.wait(120), "the held call never reached its decision"
        refused = rest(gateway, "refused")
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "up__echo", "arguments": {"text": "mcp"}, "_meta": ENVELOPE},
        }
        over_mcp = httpx.post(
            gateway.mcp_url,
            content=json.dumps(body),
            headers={**gateway.headers(), **MODERN, "Content-Type": "application/json"},
            timeout=30,
        )
        listing = httpx.get(f"{gateway.url}/v1/tools", headers=gateway.headers(), timeout=30)
        gate.release.set()
        allowed = held.result(timeout=150)

    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    answer = refused.json()
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "policy_unavailable"
    assert answer["decision"]["rule"] == UNAVAILABLE_RULE and not answer["decision"]["allow"]
    error = over_mcp.json()["error"]
    assert error["code"] == SERVER_BUSY and "overloaded" in error["message"]
    assert error["data"]["retry_after_s"] == 1
    assert listing.status_code == 503 and listing.headers["retry-after"] == "1"
    assert allowed.status_code == 200 and allowed.json()["status"] == "ok"

    engine = create_engine(gateway.config["storage"]["url"])
    try:
        kinds = [e.kind for e in read_entries(engine, ref=answer["request_id"])]
        [decided] = [e for e in read_entries(engine, ref=answer["request_id"])][1:]
    finally:
        engine.dispose()
    assert kinds == ["call.attempt", "call.decision"]  # and no outcome: not forwarded
    assert decided.payload is not None
    assert decided.payload["decision"]["rule"] == UNAVAILABLE_RULE
