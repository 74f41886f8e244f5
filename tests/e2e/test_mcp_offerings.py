"""Resources, prompts, completions and logging through the gateway end to end: the MCP
SDK's client in both protocol eras, a real gateway process, a real upstream MCP server
over Streamable HTTP, policy on every request and the audit log behind it."""

from __future__ import annotations

import hashlib

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import Engine

from gateway.audit import read_entries, verify_chain
from gateway.canonical import jcs
from gateway.errors import REFUSED
from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import ERAS, connect
from tests.support.processes import GatewayServer, McpUpstreamServer, read_calls

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gateway(offerings_gateway: GatewayServer) -> GatewayServer:
    return offerings_gateway


@pytest.fixture(scope="module")
def upstream(offerings_upstream: McpUpstreamServer) -> McpUpstreamServer:
    return offerings_upstream


@pytest.fixture(scope="module")
def database(offerings_database: Engine) -> Engine:
    return offerings_database


def reached(upstream: McpUpstreamServer, what: str) -> int:
    return sum(1 for call in upstream.calls() if call["tool"] == what)


@pytest.mark.parametrize("era", ERAS)
async def test_resources_and_templates_are_namespaced_and_filtered(
    gateway: GatewayServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        resources = {r.uri for r in (await client.list_resources()).resources}
        templates = {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        }
    assert resources == {"gateway:up/test://static", "gateway:up/test://changing"}
    assert templates == {"gateway:up/test://items/{id}"}  # not test://hidden/{id}
    async with connect(gateway.mcp_url, gateway.token(roles=()), era) as client:
        assert (await client.list_resources()).resources == []
        assert (await client.list_resource_templates()).resource_templates == []


@pytest.mark.parametrize("era", ERAS)
async def test_allowed_reads_reach_the_upstream_by_their_original_uri(
    gateway: GatewayServer, upstream: McpUpstreamServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        static = await client.read_resource("gateway:up/test://static")
        item = await client.read_resource("gateway:up/test://items/7")
    assert [(c.uri, c.text) for c in static.contents] == [
        ("gateway:up/test://static", "static contents")
    ]
    assert item.contents[0].text == "item 7"
    assert str(item.contents[0].uri) == "gateway:up/test://items/7"
    decision = static.meta[META_KEY]
    assert decision["status"] == "ok" and decision["decision"]["rule"] == "resource_grant"
    assert reached(upstream, "read:test://items/7") >= 1


@pytest.mark.parametrize("era", ERAS)
async def test_a_denied_read_is_refused_and_never_forwarded(
    gateway: GatewayServer, upstream: McpUpstreamServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        for uri in ["gateway:up/test://secret", "gateway:up/test://hidden/1"]:
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert refused.value.code == REFUSED
            data = refused.value.error.data
            assert data["uri"] == uri
            assert data[META_KEY]["decision"]["rule"] == "no_resource_grant"
    assert reached(upstream, "read:test://secret") == 0
    assert reached(upstream, "read:test://hidden/1") == 0


@pytest.mark.parametrize("era", ERAS)
async def test_a_uri_the_gateway_cannot_route_is_resource_not_found(
    gateway: GatewayServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        for uri in ["test://static", "gateway:nobody/test://static"]:
            with pytest.raises(MCPError) as unknown:
                await client.read_resource(uri)
            assert unknown.value.code == -32602
            assert unknown.value.error.data["uri"] == uri


@pytest.mark.parametrize("era", ERAS)
async def test_prompts_are_filtered_and_got_with_their_arguments_through_policy(
    gateway: GatewayServer, upstream: McpUpstreamServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        listed = {p.name: p for p in (await client.list_prompts()).prompts}
        assert "up__greet" in listed and "up__secret_prompt" not in listed
        assert [a.name for a in listed["up__greet"].arguments or []] == ["name", "style"]
        got = await client.get_prompt("up__greet", {"name": f"Ada-{era}", "style": "formal"})
        assert got.messages[0].content.text == f"Say hello to Ada-{era}, formal style."
        assert got.meta[META_KEY]["decision"]["rule"] == "prompt_grant"
        with pytest.raises(MCPError) as denied:
            await client.get_prompt("up__secret_prompt", {"topic": "x"})
        assert denied.value.code == REFUSED
        with pytest.raises(MCPError) as missing:  # refused before policy: a required argument
            await client.get_prompt("up__greet", {"style": "formal"})
        assert missing.value.code == -32602
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("up__nope", {})
        assert unknown.value.code == -32602
    assert reached(upstream, "prompt:secret_prompt") == 0


@pytest.mark.parametrize("era", ERAS)
async def test_completions_only_on_what_the_caller_may_see(
    gateway: GatewayServer, era: str
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), era) as client:
        style = await client.complete(
            types.PromptReference(name="up__greet"), {"name": "style", "value": "f"}
        )
        assert style.completion.values == ["formal", "friendly"]
        ids = await client.complete(
            types.ResourceTemplateReference(uri="gateway:up/test://items/{id}"),
            {"name": "id", "value": ""},
        )
        assert ids.completion.values == ["1", "2", "3"]
        for ref, name in [
            (types.PromptReference(name="up__secret_prompt"), "topic"),
            (types.ResourceTemplateReference(uri="gateway:up/test://hidden/{id}"), "id"),
        ]:
            with pytest.raises(MCPError) as denied:
                await client.complete(ref, {"name": name, "value": ""})
            assert denied.value.code == REFUSED
            assert denied.value.error.data[META_KEY]["decision"]["rule"] == "no_completion_grant"


async def collect_logs(gateway: GatewayServer, era: str, level: str | None) -> list[str]:
    """The log messages relayed while ``up__chatty`` runs, for a client asking for
    ``level`` (2025-11-25: logging/setLevel in its session; 2026-07-28: per request)."""
    received: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(f"{params.level}:{params.data}")

    async with connect(
        gateway.mcp_url,
        gateway.token(),
        era,
        logging_callback=on_log,
        log_level=level if era != "legacy" else None,
    ) as client:
        if era == "legacy" and level is not None:
            await client.set_logging_level(level)  # type: ignore[arg-type]
        result = await client.call_tool("up__chatty", {"text": era})
    assert not result.is_error
    return received


@pytest.mark.parametrize("era", ERAS)
async def test_upstream_log_messages_reach_the_client_at_the_level_it_set(
    gateway: GatewayServer, era: str
) -> None:
    assert await collect_logs(gateway, era, "info") == [
        f"info:first {era}",
        f"warning:second {era}",
    ]
    assert await collect_logs(gateway, era, "debug") == [
        f"info:first {era}",
        f"warning:second {era}",
        f"debug:third {era}",
    ]
    assert await collect_logs(gateway, era, None) == []  # none asked, none sent


async def test_the_reads_and_prompts_are_in_the_audit_log_and_the_chain_verifies(
    gateway: GatewayServer, database: Engine
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
        read = await client.read_resource("gateway:up/test://static")
        prompt = await client.get_prompt("up__greet", {"name": "Audit"})
        completion = await client.complete(
            types.PromptReference(name="up__greet"), {"name": "style", "value": "pl"}
        )
        with pytest.raises(MCPError):
            await client.read_resource("gateway:up/test://secret")
    ref = completion.meta[META_KEY]["request_id"]
    completed = {e.kind: e.payload for e in read_entries(database, ref=ref)}
    assert completed["call.attempt"]["method"] == "completion/complete"
    assert completed["call.attempt"]["arguments"]["argument"] == {"name": "style", "value": "pl"}
    assert completed["call.outcome"]["value_count"] == 1
    for result, method, target in [
        (read, "resources/read", "gateway:up/test://static"),
        (prompt, "prompts/get", "up__greet"),
    ]:
        ref = result.meta[META_KEY]["request_id"]
        entries = {e.kind: e.payload for e in read_entries(database, ref=ref)}
        assert set(entries) == {"call.attempt", "call.decision", "call.outcome"}
        assert entries["call.attempt"]["method"] == method
        assert entries["call.attempt"]["tool"] == target
        assert entries["call.decision"]["input"]["action"] == method
        outcome = entries["call.outcome"]
        # The method's own fields, as the client got them (without the era's envelope).
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        document = {k: dumped[k] for k in ("contents", "description", "messages") if k in dumped}
        if method == "resources/read":
            assert outcome["uri"] == target and outcome["upstream_uri"] == "test://static"
            assert outcome["size"] == len(b"static contents")
        expected = hashlib.sha256(jcs(document)).hexdigest()
        assert outcome["result_sha256"] == expected  # what the client got, by hash only
        assert "contents" not in outcome and "messages" not in outcome
        if method == "prompts/get":
            assert outcome["message_count"] == 1
    denied = [
        e
        for e in read_entries(database, kind="call.decision")
        if e.payload
        and e.payload["input"]
        and e.payload["input"]["resource"].get("uri") == "gateway:up/test://secret"
    ]
    assert denied and denied[-1].payload["decision"]["allow"] is False
    assert read_entries(database, kind="call.outcome", ref=denied[-1].ref) == []
    verify_chain(read_entries(database), "test.gateway/audit")


def test_reads_show_the_listed_definition_to_policy(database: Engine) -> None:
    reads = [
        e.payload["input"]["resource"]
        for e in read_entries(database, kind="call.decision")
        if e.payload and e.payload["input"] and e.payload["input"]["action"] == "resources/read"
    ]
    static = next(r for r in reads if r["uri"] == "gateway:up/test://static")
    assert static["upstream_uri"] == "test://static" and static["name"] == "static"
    assert static["definition_hash"] and static["template"] is None
    item = next(r for r in reads if r["uri"].startswith("gateway:up/test://items/"))
    assert item["template"] == "gateway:up/test://items/{id}" and item["name"] is None


async def test_upstream_calls_never_see_the_agents_token(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    token = gateway.token()
    async with connect(gateway.mcp_url, token, "legacy") as client:
        await client.read_resource("gateway:up/test://static")
    assert all(token not in str(call) for call in read_calls(upstream.call_log))
