"""The MCP surface end to end: the SDK's client, in both protocol eras, through the
gateway to real upstream MCP servers over HTTP and stdio."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import ERAS, connect
from tests.support.processes import GatewayServer, McpUpstreamServer, read_calls

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("era", ERAS)
async def test_tools_are_namespaced_and_filtered_per_principal(
    gateway: GatewayServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert {"up__echo", "up__whoami", "local__echo", "local__write"} <= names
    assert "up__write" not in names  # no grant: hidden from this principal

    async with connect(gateway.mcp_url, gateway.token(roles=()), era) as client:
        assert (await client.list_tools()).tools == []  # no role, no tools


@pytest.mark.parametrize("era", ERAS)
async def test_allowed_calls_reach_http_and_stdio_upstreams(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, stdio_call_log: Path, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        over_http = await client.call_tool("up__echo", {"text": f"http-{era}"})
        over_stdio = await client.call_tool("local__echo", {"text": f"stdio-{era}"})
    assert not over_http.is_error and over_http.content[0].text == f"http-{era}"
    assert not over_stdio.is_error and over_stdio.content[0].text == f"stdio-{era}"
    assert {"text": f"http-{era}"} in [c["arguments"] for c in mcp_upstream.calls()]
    assert {"text": f"stdio-{era}"} in [c["arguments"] for c in read_calls(stdio_call_log)]
    decision = over_http.meta[META_KEY]
    assert decision["status"] == "ok" and decision["decision"]["allow"] is True
    assert decision["request_id"].startswith("req_")


@pytest.mark.parametrize("era", ERAS)
async def test_denied_call_is_an_error_result_and_never_forwarded(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, era: str
) -> None:
    before = len(mcp_upstream.calls())
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        result = await client.call_tool("up__write", {"key": "k", "value": "v"})
    assert result.is_error
    assert "not executed" in result.content[0].text
    details = result.meta[META_KEY]
    assert details["status"] == "denied"
    assert details["decision"]["allow"] is False
    assert details["decision"]["rule"] == "no_grant"
    assert len(mcp_upstream.calls()) == before


@pytest.mark.parametrize("era", ERAS)
async def test_unknown_tool_is_invalid_params(gateway: GatewayServer, era: str) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("up__nope", {})
    assert raised.value.code == -32602
    assert "unknown tool" in raised.value.message


@pytest.mark.parametrize("era", ERAS)
async def test_schema_invalid_arguments_are_refused_before_policy(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, era: str
) -> None:
    before = len(mcp_upstream.calls())
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        result = await client.call_tool("up__echo", {"text": 42})
    assert result.is_error
    assert "input schema" in result.content[0].text
    assert result.meta[META_KEY]["decision"]["engine"] == "gateway"
    assert len(mcp_upstream.calls()) == before


@pytest.mark.parametrize("era", ERAS)
async def test_results_are_rebuilt_without_upstream_meta(gateway: GatewayServer, era: str) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        result = await client.call_tool("up__with_meta", {})
        failed = await client.call_tool("up__fail", {})
    assert result.structured_content == {"ok": True}
    assert "upstream/secret" not in (result.meta or {})
    assert result.content[0].meta is None
    assert failed.is_error and "failed on purpose" in failed.content[0].text
    assert failed.meta[META_KEY]["status"] == "ok"  # forwarded; the tool itself failed


@pytest.mark.parametrize("era", ERAS)
async def test_upstream_progress_reaches_the_client(gateway: GatewayServer, era: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        result = await client.call_tool("up__slow", {"seconds": 0.3}, progress_callback=on_progress)
    assert not result.is_error
    assert seen == [1, 2, 3]


async def test_upstream_gets_a_minted_token_never_the_agents(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer
) -> None:
    import httpx
    import jwt

    agent_token = gateway.token(sub="agent:minted", act=("user:alice",))
    async with connect(gateway.mcp_url, agent_token, "2026-07-28") as client:
        result = await client.call_tool("up__whoami", {})
    seen = result.structured_content
    assert seen is not None
    presented = seen["authorization"].removeprefix("Bearer ")
    assert presented != agent_token
    async with httpx.AsyncClient() as http:
        published = (await http.get(gateway.url + "/.well-known/jwks.json")).json()
    jwks = jwt.PyJWKSet.from_dict(published)
    claims = jwt.decode(
        presented, jwks.keys[0].key, algorithms=["EdDSA"], audience="http://up.test"
    )
    assert claims["iss"] == gateway.url
    assert claims["sub"] == "agent:minted"
    assert claims["act"] == {"sub": gateway.url, "act": {"sub": "user:alice"}}
    assert claims["exp"] - claims["iat"] <= 300


async def test_upstream_timeout_is_a_clear_error_and_the_gateway_keeps_serving(
    gateway: GatewayServer,
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
        slow = await client.call_tool("up__slow", {"seconds": 5})  # upstream timeout is 2 s
        fast = await client.call_tool("up__echo", {"text": "still here"})
    assert slow.is_error
    assert slow.meta[META_KEY]["error"]["code"] == "upstream_timeout"
    assert fast.content[0].text == "still here"
