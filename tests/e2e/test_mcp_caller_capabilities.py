"""What a 2026-07-28 upstream is told the calling client can be asked: the caller's own
capabilities (those the gateway relays), per request, whichever way the gateway sends
the request — the lean path, or the SDK's client (taken when the client asks for
progress) — never the shared connection's (gateway.upstreams.mcp_capabilities)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

MODERN = "2026-07-28"
CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("capabilities-upstream"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    directory: Path = tmp_path_factory.mktemp("capabilities")
    server = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(directory, [{"role": "agent", "tool": "up__whoami"}]),
    ).start()
    yield server
    server.stop()


def _whoami(gateway: GatewayServer, declared: dict[str, Any], *, progress: bool) -> None:
    meta: dict[str, Any] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        CAPABILITIES: declared,
        "io.modelcontextprotocol/clientInfo": {"name": "capabilities-test", "version": "1"},
    }
    if progress:
        meta["progressToken"] = "p-1"  # the SDK's path: the lean one relays no progress
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "up__whoami", "arguments": {}, "_meta": meta},
    }
    headers = {
        **gateway.headers(),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "up__whoami",
    }
    response = httpx.post(gateway.mcp_url, json=body, headers=headers, timeout=30)
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
    answer = json.loads(text)
    assert answer["result"]["isError"] is False, answer


@pytest.mark.parametrize("progress", [False, True], ids=["lean", "sdk"])
@pytest.mark.parametrize(
    ("declared", "told"),
    [
        ({}, {}),
        ({"sampling": {}}, {"sampling": {}}),
        ({"roots": {}, "elicitation": {"form": {}}}, {"roots": {}, "elicitation": {"form": {}}}),
    ],
    ids=["none", "sampling", "roots-and-form"],
)
def test_the_upstream_is_told_the_callers_capabilities(
    gateway: GatewayServer,
    upstream: McpUpstreamServer,
    progress: bool,
    declared: dict[str, Any],
    told: dict[str, Any],
) -> None:
    before = len(upstream.calls())
    _whoami(gateway, declared, progress=progress)
    calls = [c for c in upstream.calls()[before:] if c["tool"] == "whoami"]
    assert len(calls) == 1
    assert calls[0]["meta"][CAPABILITIES] == told
    meta = calls[0]["meta"]
    assert ("progressToken" in meta or "progress_token" in meta) is progress  # the path taken
