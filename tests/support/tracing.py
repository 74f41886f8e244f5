"""An in-process gateway for the tracing tests (tests/integration/test_telemetry*.py):
real upstream processes, the app under Starlette's test client, and a raw sessionless
MCP ``tools/call`` that can carry W3C trace context as headers or in ``_meta``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.testclient import TestClient

from gateway.audit import read_entries
from tests.support.processes import (
    GatewayServer,
    HttpApiServer,
    McpUpstreamServer,
    stdio_upstream_command,
    upstream_grants,
    write_policy,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
VERSION = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "trace-test", "version": "1"},
}


class Gateway:
    def __init__(self, server: GatewayServer, client: TestClient) -> None:
        self.server = server
        self.client = client

    @property
    def database(self) -> Engine:
        return self.client.app.state.components.database  # type: ignore[attr-defined]

    def mcp_call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        meta: dict[str, Any] | None = None,
        via_sdk: bool = False,
        roles: tuple[str, ...] = ("agent",),
    ) -> dict[str, Any]:
        """A sessionless tools/call; ``via_sdk``: with a progress token, which sends it
        through the SDK's transport instead of the direct path."""
        envelope = {**ENVELOPE, **(meta or {})}
        if via_sdk:
            envelope["progressToken"] = "p-1"
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": envelope},
        }
        response = self.client.post(
            "/mcp",
            json=body,
            headers={
                **self.server.headers(roles=roles),
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": VERSION,
                "Mcp-Method": "tools/call",
                "Mcp-Name": tool,
                **(headers or {}),
            },
        )
        assert response.status_code == 200, response.text
        if response.headers["content-type"].startswith("text/event-stream"):
            data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
            return json.loads(data[-1])["result"]
        return response.json()["result"]

    def attempt(self, request_id: str) -> dict[str, Any]:
        entry = read_entries(self.database, ref=request_id, kind="call.attempt")[0]
        assert entry.payload is not None
        return entry.payload


def gateway_config(directory: Path, upstreams: dict[str, Any]) -> GatewayServer:
    """A gateway (not started) before three recording upstreams: ``up`` (MCP over
    HTTP), ``local`` (MCP over stdio) and ``api`` (an HTTP API); ``upstreams`` holds
    the first and the last (`McpUpstreamServer`, `HttpApiServer`) and the stdio call
    log's path."""
    grants = [
        *upstream_grants("up"),
        *upstream_grants("local"),
        {"role": "agent", "tool": "api__*"},
    ]
    server = GatewayServer.configure(
        directory,
        upstreams=[
            {"name": "up", "url": upstreams["mcp"].url},
            {
                "name": "local",
                "transport": "stdio",
                "command": stdio_upstream_command(upstreams["stdio_log"]),
            },
            {
                "name": "api",
                "kind": "http",
                "base_url": upstreams["api"].url,
                "tools": [{"name": "create", "method": "POST", "path": "/items"}],
            },
        ],
        policy=write_policy(directory, grants),
    )
    server.config["data_dir"] = str(directory / "var")
    server.config["audit"]["signing_key_file"] = str(directory / "keys" / "audit.pem")
    return server


@contextlib.contextmanager
def recording_upstreams(directory: Path) -> Iterator[dict[str, Any]]:
    """The upstreams `gateway_config` expects, running while inside."""
    mcp = McpUpstreamServer.start(directory)
    try:
        api = HttpApiServer.start(directory)
        try:
            yield {"mcp": mcp, "api": api, "stdio_log": directory / "stdio.calls.jsonl"}
        finally:
            api.process.stop()
    finally:
        mcp.process.stop()
