"""server-everything's own task (``simulate-research-query``, experimental tasks of
2025-11-25, ``taskSupport: "required"``) passed through the gateway
(docs/decisions/0030): clients of both eras get a task of the gateway's, poll it to
the end, read the upstream's report, and another principal can neither see nor cancel
it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.mcp_client import connect
from tests.support.peers import EverythingServer
from tests.support.processes import GatewayServer, upstream_grants, write_policy
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
TOOL = "ev__simulate-research-query"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory: Path = tmp_path_factory.mktemp("everything-tasks")
    everything = EverythingServer.start(directory)
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[{"name": "ev", "url": everything.url, "timeout_s": 10}],
        policy=write_policy(directory, upstream_grants("ev")),
    ).start()
    yield server
    server.stop()
    everything.process.stop()


class Legacy:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from mcp.shared.exceptions import MCPError

        try:
            return {
                "result": await self.client.session._dispatcher.send_raw_request(method, params, {})
            }
        except MCPError as error:
            return {"error": {"code": error.error.code, "message": error.error.message}}


@pytest.fixture
async def legacy(gateway: GatewayServer) -> AsyncIterator[Legacy]:
    async with connect(gateway.mcp_url, gateway.token("agent:owner"), "legacy") as client:
        yield Legacy(client)


async def _modern(
    gateway: GatewayServer, sub: str, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": {"io.modelcontextprotocol/tasks": {}}
        },
        "io.modelcontextprotocol/clientInfo": {"name": "everything-tasks", "version": "1"},
    }
    headers = {
        **gateway.headers(gateway.token(sub)),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        "Mcp-Name": str(params.get("name", params.get("taskId", ""))),
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(gateway.mcp_url, json=body, headers=headers)
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
    return dict(json.loads(text))


async def test_a_legacy_client_runs_server_everythings_task(gateway: GatewayServer, legacy: Legacy):
    created = await legacy.request(
        "tools/call", {"name": TOOL, "arguments": {"topic": "tides"}, "task": {"ttl": 60000}}
    )
    task_id = created["result"]["task"]["taskId"]
    assert task_id.startswith("tsk_"), created
    stranger = await _modern(gateway, "agent:stranger", "tasks/get", {"taskId": task_id})
    assert stranger["error"]["code"] == -32602

    async def ended() -> bool:
        got = await legacy.request("tasks/get", {"taskId": task_id})
        return got["result"]["status"] == "completed"

    await eventually_async(ended, "server-everything's task completed", timeout_s=60)
    result = await legacy.request("tasks/result", {"taskId": task_id})
    text = " ".join(item.get("text", "") for item in result["result"]["content"])
    assert "tides" in text, result


async def test_a_modern_client_runs_server_everythings_task(gateway: GatewayServer):
    created = await _modern(
        gateway, "agent:owner", "tools/call", {"name": TOOL, "arguments": {"topic": "reefs"}}
    )
    assert created["result"]["resultType"] == "task", created
    task_id = created["result"]["taskId"]
    refused = await _modern(gateway, "agent:stranger", "tasks/cancel", {"taskId": task_id})
    assert refused["error"]["code"] == -32602

    async def completed() -> dict[str, Any] | None:
        got = await _modern(gateway, "agent:owner", "tasks/get", {"taskId": task_id})
        return got["result"] if got["result"]["status"] == "completed" else None

    done = await eventually_async(completed, "server-everything's task completed", timeout_s=60)
    text = " ".join(item.get("text", "") for item in done["result"]["content"])
    assert "reefs" in text, done
