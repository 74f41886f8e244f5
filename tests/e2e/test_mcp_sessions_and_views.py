"""`/mcp/{upstream}` (one upstream in its own names) and sessions for 2025-11-25
clients (bound to who opened them and where, bounded, optional), end to end: real
gateway processes, a real upstream, the MCP SDK's client and raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import Engine

from gateway.audit import read_entries
from gateway.errors import REFUSED
from gateway.surfaces.mcp import META_KEY
from tests.e2e.conftest import offerings_gateway_with
from tests.e2e.mcp_client import ERAS, connect
from tests.support.processes import GatewayServer, McpUpstreamServer

pytestmark = pytest.mark.anyio

LEGACY = "2025-11-25"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


def legacy_request(request_id: int, method: str, params: dict[str, Any] | None = None) -> Any:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


def post(
    url: str, token: str, body: Any, session_id: str | None = None, **headers: str
) -> httpx.Response:
    sent = {**MCP_HEADERS, "Authorization": f"Bearer {token}", **headers}
    if session_id is not None:
        sent["Mcp-Session-Id"] = session_id
        sent["MCP-Protocol-Version"] = LEGACY
    return httpx.post(url, json=body, headers=sent, timeout=10)


def open_session(url: str, token: str) -> str:
    opened = post(url, token, INITIALIZE)
    assert opened.status_code == 200, opened.text
    session_id = opened.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert post(url, token, initialized, session_id).status_code == 202
    return session_id


# --- /mcp/{upstream} ------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_one_upstream_alone_in_its_own_names(
    offerings_gateway: GatewayServer, offerings_database: Engine, era: str
) -> None:
    gateway = offerings_gateway
    async with connect(gateway.mcp_url + "/up", gateway.token(), era) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        echoed = await client.call_tool("echo", {"text": f"alone-{era}"})
        resources = {r.uri for r in (await client.list_resources()).resources}
        templates = [
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        ]
        read = await client.read_resource("test://items/5")
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        prompt = await client.get_prompt("greet", {"name": "Alone"})
        completed = await client.complete(
            types.ResourceTemplateReference(uri="test://items/{id}"), {"name": "id", "value": "2"}
        )
        with pytest.raises(MCPError) as denied:
            await client.read_resource("test://secret")
    assert "echo" in tools and not any(name.startswith("up__") for name in tools)
    assert "workflow__submit" not in tools  # the gateway's own tools are /mcp's
    assert echoed.content[0].text == f"alone-{era}"
    assert resources == {"test://static", "test://changing"}
    assert templates == ["test://items/{id}"]
    assert str(read.contents[0].uri) == "test://items/5" and read.contents[0].text == "item 5"
    assert "greet" in prompts and "secret_prompt" not in prompts
    assert prompt.messages[0].content.text == "Say hello to Alone, plain style."
    assert completed.completion.values == ["2"]
    assert denied.value.code == REFUSED and denied.value.error.data["uri"] == "test://secret"
    # Policy and the audit log see the gateway's names, so grants are the same.
    ref = read.meta[META_KEY]["request_id"]
    [attempt] = read_entries(offerings_database, kind="call.attempt", ref=ref)
    assert attempt.payload is not None
    assert attempt.payload["tool"] == "gateway:up/test://items/5"
    ref = echoed.meta[META_KEY]["request_id"]
    [attempt] = read_entries(offerings_database, kind="call.attempt", ref=ref)
    assert attempt.payload is not None and attempt.payload["tool"] == "up__echo"


def test_an_unknown_upstream_is_not_found(offerings_gateway: GatewayServer) -> None:
    answer = post(offerings_gateway.mcp_url + "/nope", offerings_gateway.token(), INITIALIZE)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_upstream"


# --- sessions ---------------------------------------------------------------------------


def test_a_session_is_bound_to_the_identity_and_the_endpoint_that_opened_it(
    offerings_gateway: GatewayServer,
) -> None:
    gateway = offerings_gateway
    owner = gateway.token(sub="agent:owner")
    session_id = open_session(gateway.mcp_url, owner)
    listing = legacy_request(2, "tools/list")
    assert post(gateway.mcp_url, owner, listing, session_id).status_code == 200
    # The same person with another token (other roles) is the same identity.
    same = gateway.token(sub="agent:owner", roles=("agent", "other"))
    assert post(gateway.mcp_url, same, listing, session_id).status_code == 200
    # Anyone else is told the session does not exist; the session itself is untouched.
    intruder = gateway.token(sub="agent:intruder")
    assert post(gateway.mcp_url, intruder, listing, session_id).status_code == 404
    assert post(gateway.mcp_url + "/up", owner, listing, session_id).status_code == 404
    assert post(gateway.mcp_url, owner, listing, session_id).status_code == 200
    # Its owner ends it; then it is gone for everyone.
    headers = {"Authorization": f"Bearer {intruder}", "Mcp-Session-Id": session_id}
    assert httpx.delete(gateway.mcp_url, headers=headers).status_code == 404
    headers["Authorization"] = f"Bearer {owner}"
    assert httpx.delete(gateway.mcp_url, headers=headers).status_code == 200
    assert post(gateway.mcp_url, owner, listing, session_id).status_code == 404


def test_2026_requests_and_unknown_sessions_stay_sessionless(
    offerings_gateway: GatewayServer,
) -> None:
    gateway = offerings_gateway
    modern = {
        **legacy_request(1, "tools/list"),
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    answer = post(
        gateway.mcp_url,
        gateway.token(),
        modern,
        **{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"},
    )
    assert answer.status_code == 200 and "mcp-session-id" not in answer.headers
    listing = legacy_request(2, "tools/list")
    assert post(gateway.mcp_url, gateway.token(), listing, "no-such-session").status_code == 404
    # GET without a session: there is no standalone stream to open.
    headers = {"Authorization": f"Bearer {gateway.token()}", "Accept": "text/event-stream"}
    assert httpx.get(gateway.mcp_url, headers=headers).status_code == 405


@pytest.fixture(scope="module")
def bounded_gateway(
    workdir: Path, offerings_upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    sessions = {"sessions": {"max_sessions": 1}}
    server = offerings_gateway_with(workdir / "bounded", offerings_upstream, mcp=sessions)
    yield server.start()
    server.stop()


def test_sessions_are_bounded(bounded_gateway: GatewayServer) -> None:
    token = bounded_gateway.token()
    first = open_session(bounded_gateway.mcp_url, token)
    refused = post(bounded_gateway.mcp_url, token, INITIALIZE)
    assert refused.status_code == 503 and "mcp-session-id" not in refused.headers
    headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": first}
    assert httpx.delete(bounded_gateway.mcp_url, headers=headers).status_code == 200
    open_session(bounded_gateway.mcp_url, token)  # room again


@pytest.fixture(scope="module")
def sessionless_gateway(
    workdir: Path, offerings_upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    sessions = {"sessions": {"enabled": False}}
    server = offerings_gateway_with(workdir / "sessionless", offerings_upstream, mcp=sessions)
    yield server.start()
    server.stop()


async def test_with_sessions_off_2025_clients_are_served_sessionless(
    sessionless_gateway: GatewayServer,
) -> None:
    opened = post(sessionless_gateway.mcp_url, sessionless_gateway.token(), INITIALIZE)
    assert opened.status_code == 200 and "mcp-session-id" not in opened.headers
    async with connect(
        sessionless_gateway.mcp_url, sessionless_gateway.token(), "legacy"
    ) as client:
        result = await client.call_tool("up__echo", {"text": "no session"})
        read = await client.read_resource("gateway:up/test://static")
    assert result.content[0].text == "no session"
    assert read.contents[0].text == "static contents"
