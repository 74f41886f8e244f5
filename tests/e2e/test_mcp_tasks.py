"""Approval holds as MCP tasks, end to end: a real gateway process holds a tool of the
recording upstream for approval; a client that takes tasks (2025-11-25 ``params.task``
through the MCP SDK's own session; 2026-07-28 raw requests declaring the tasks
extension) gets a task at once, an approver approves through the REST API, the client
reads the result, and the upstream's call log proves the call ran once. The crash
test kills the gateway that accepted the task (``kill -9``) after the approval and
before anything executed it, and a restarted gateway runs it exactly once."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.audit import read_entries
from gateway.store import create_engine
from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import connect
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
]
MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
    "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tasks")


@pytest.fixture(scope="module")
def upstream(workdir: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


def _gateway(directory: Path, upstream: McpUpstreamServer, **executor: Any) -> GatewayServer:
    server = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(directory, GRANTS),
    )
    server.config["approvals"] = {"hold_s": 5, "sweep_interval_s": 0.5}
    server.config["executor"] = {"poll_s": 0.2, **executor}
    return server


@pytest.fixture(scope="module")
def gateway(workdir: Path, upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    server = _gateway(workdir / "gateway", upstream).start()
    yield server
    server.stop()


# --- clients ----------------------------------------------------------------------------


class ModernClient:
    """2026-07-28 raw requests, each declaring the tasks extension."""

    def __init__(self, gateway: GatewayServer, token: str) -> None:
        self.gateway = gateway
        self.token = token

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name", params.get("taskId", ""))
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": {**params, "_meta": ENVELOPE},
        }
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
            "Mcp-Name": str(name),
        }
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(self.gateway.mcp_url, json=body, headers=headers)
        if response.headers["content-type"].startswith("text/event-stream"):
            data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
            return dict(json.loads(data[-1]))
        return dict(response.json())


@pytest.fixture
async def legacy(gateway: GatewayServer) -> AsyncIterator[Any]:
    """A 2025-11-25 session of the MCP SDK's client; requests sent raw on it, because
    the SDK reads a tools/call answer as a CallToolResult, never a task."""
    async with connect(gateway.mcp_url, gateway.token("agent:tasks"), "legacy") as client:
        yield client


async def _legacy(client: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    from mcp.shared.exceptions import MCPError

    try:
        result = await client.session._dispatcher.send_raw_request(method, params, {})
    except MCPError as error:
        return {"error": {"code": error.error.code, "message": error.error.message}}
    return {"result": result}


async def _approve(gateway: GatewayServer, approval_id: str, *, approve: bool = True) -> None:
    token = gateway.token("user:bob", roles=("approver",))
    verb = "approve" if approve else "deny"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        response = await http.post(
            f"/v1/approvals/{approval_id}/{verb}",
            json={"reason": "checked"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text


def _writes(upstream: McpUpstreamServer, value: str) -> list[dict[str, Any]]:
    return [
        c for c in upstream.calls() if c["tool"] == "write" and c["arguments"]["value"] == value
    ]


# --- 2025-11-25 -------------------------------------------------------------------------


async def test_legacy_held_call_is_a_task_that_completes_once_approved(
    gateway: GatewayServer, upstream: McpUpstreamServer, legacy: Any
):
    capabilities = legacy.session.server_capabilities
    assert capabilities.tasks is not None and capabilities.tasks.requests.tools.call is not None
    value = "v-" + uuid.uuid4().hex
    created = await _legacy(
        legacy,
        "tools/call",
        {"name": "up__write", "arguments": {"key": "k", "value": value}, "task": {"ttl": 60000}},
    )
    task = created["result"]["task"]
    assert task["status"] == "working"
    decision = created["result"]["_meta"][META_KEY]
    approval_id = decision["approval_id"]
    assert decision["status"] == "pending_approval"
    assert approval_id in task["statusMessage"]
    assert f"/console#/approvals/{approval_id}" in task["statusMessage"]
    assert decision["console_url"].endswith(f"/console#/approvals/{approval_id}")

    got = await _legacy(legacy, "tasks/get", {"taskId": task["taskId"]})
    assert got["result"]["status"] == "working"
    listed = await _legacy(legacy, "tasks/list", {})
    assert task["taskId"] in [t["taskId"] for t in listed["result"]["tasks"]]
    assert _writes(upstream, value) == []

    await _approve(gateway, approval_id)

    async def completed() -> dict[str, Any] | None:
        state = await _legacy(legacy, "tasks/get", {"taskId": task["taskId"]})
        return state if state["result"]["status"] == "completed" else None

    await eventually_async(completed, "the task completed")
    first = await _legacy(legacy, "tasks/result", {"taskId": task["taskId"]})
    assert first["result"]["content"][0]["text"] == "wrote k"
    assert first["result"]["_meta"]["io.modelcontextprotocol/related-task"] == {
        "taskId": task["taskId"]
    }
    second = await _legacy(legacy, "tasks/result", {"taskId": task["taskId"]})
    assert second["result"]["content"] == first["result"]["content"]
    assert len(_writes(upstream, value)) == 1  # ran once, read twice
    cancel = await _legacy(legacy, "tasks/cancel", {"taskId": task["taskId"]})
    assert cancel["error"]["code"] == -32602  # already completed


async def test_legacy_task_of_a_call_that_needs_no_approval_holds_its_result(legacy: Any):
    created = await _legacy(
        legacy, "tools/call", {"name": "up__echo", "arguments": {"text": "hi"}, "task": {}}
    )
    task = created["result"]["task"]
    assert task["status"] == "completed"
    result = await _legacy(legacy, "tasks/result", {"taskId": task["taskId"]})
    assert result["result"]["content"][0]["text"] == "hi"


async def test_legacy_task_of_a_refused_call_fails_with_the_refusal(legacy: Any):
    created = await _legacy(
        legacy,
        "tools/call",
        {"name": "up__login", "arguments": {"user": "u", "api_key": "k"}, "task": {}},
    )
    task = created["result"]["task"]
    assert task["status"] == "failed"
    result = await _legacy(legacy, "tasks/result", {"taskId": task["taskId"]})
    assert result["result"]["isError"] is True
    assert result["result"]["_meta"][META_KEY]["error"]["code"] == "denied"


# --- 2026-07-28 -------------------------------------------------------------------------


async def test_modern_held_call_is_a_task_whose_result_is_inlined(
    gateway: GatewayServer, upstream: McpUpstreamServer
):
    client = ModernClient(gateway, gateway.token("agent:tasks"))
    value = "v-" + uuid.uuid4().hex
    created = await client.request(
        "tools/call", {"name": "up__write", "arguments": {"key": "k", "value": value}}
    )
    result = created["result"]
    assert result["resultType"] == "task" and result["status"] == "working"
    assert result["ttlMs"] > 0 and result["pollIntervalMs"] > 0
    approval_id = result["_meta"][META_KEY]["approval_id"]
    # Right after: durably created.
    got = await client.request("tasks/get", {"taskId": result["taskId"]})
    assert got["result"]["status"] == "working" and "result" not in got["result"]
    # Removed in the 2026 extension.
    missing = await client.request("tasks/result", {"taskId": result["taskId"]})
    assert missing["error"]["code"] == -32601

    await _approve(gateway, approval_id)

    async def completed() -> dict[str, Any] | None:
        state = await client.request("tasks/get", {"taskId": result["taskId"]})
        return state["result"] if state["result"]["status"] == "completed" else None

    done = await eventually_async(completed, "the task completed")
    assert done["resultType"] == "complete"
    assert done["result"]["content"][0]["text"] == "wrote k"
    again = await client.request("tasks/get", {"taskId": result["taskId"]})
    assert again["result"]["result"]["content"] == done["result"]["content"]
    assert len(_writes(upstream, value)) == 1
    # Cancelling an ended task is acknowledged and changes nothing.
    ack = await client.request("tasks/cancel", {"taskId": result["taskId"]})
    assert ack["result"]["resultType"] == "complete"


async def test_modern_denied_task_fails_with_the_denial(
    gateway: GatewayServer, upstream: McpUpstreamServer
):
    client = ModernClient(gateway, gateway.token("agent:tasks"))
    value = "v-" + uuid.uuid4().hex
    created = await client.request(
        "tools/call", {"name": "up__write", "arguments": {"key": "k", "value": value}}
    )
    await _approve(gateway, created["result"]["_meta"][META_KEY]["approval_id"], approve=False)

    async def failed() -> dict[str, Any] | None:
        state = await client.request("tasks/get", {"taskId": created["result"]["taskId"]})
        return state["result"] if state["result"]["status"] == "failed" else None

    done = await eventually_async(failed, "the task failed")
    assert "checked" in done["statusMessage"] and "result" not in done
    assert done["error"]["data"][META_KEY]["error"]["code"] == "approval_denied"
    assert _writes(upstream, value) == []


async def test_a_call_that_needs_no_approval_is_answered_as_usual(gateway: GatewayServer):
    client = ModernClient(gateway, gateway.token("agent:tasks"))
    answer = await client.request("tools/call", {"name": "up__echo", "arguments": {"text": "hi"}})
    assert answer["result"]["resultType"] == "complete"
    assert answer["result"]["content"][0]["text"] == "hi"


# --- visibility ---------------------------------------------------------------------------


async def test_another_principal_cannot_see_or_cancel_the_task(
    gateway: GatewayServer, upstream: McpUpstreamServer
):
    owner = ModernClient(gateway, gateway.token("agent:tasks"))
    other = ModernClient(gateway, gateway.token("agent:other"))
    created = await owner.request(
        "tools/call", {"name": "up__write", "arguments": {"key": "k", "value": "mine"}}
    )
    task_id = created["result"]["taskId"]
    for method in ("tasks/get", "tasks/cancel"):
        refused = await other.request(method, {"taskId": task_id})
        assert refused["error"]["code"] == -32602, refused
    # Told exactly what an unknown id is told.
    unknown = await other.request("tasks/get", {"taskId": "tsk_" + "0" * 32})
    assert unknown["error"]["code"] == -32602
    assert unknown["error"]["message"].startswith("no task ")
    assert refused["error"]["message"] == f"no task {task_id!r}"
    # Still the owner's, still working, and the refusals are in the audit log.
    mine = await owner.request("tasks/get", {"taskId": task_id})
    assert mine["result"]["status"] == "working"
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        refusals = [e.payload for e in read_entries(engine, kind="task.refused")]
    finally:
        engine.dispose()
    assert {"not_owner"} == {r["reason"] for r in refusals if r["task_id"] == task_id}
    assert all(r["principal"]["sub"] == "agent:other" for r in refusals)
    # The owner cancels it: nothing runs, even once approved.
    ack = await owner.request("tasks/cancel", {"taskId": task_id})
    assert ack["result"]["resultType"] == "complete" and "taskId" not in ack["result"]
    cancelled = await owner.request("tasks/get", {"taskId": task_id})
    assert cancelled["result"]["status"] == "cancelled"


# --- crash --------------------------------------------------------------------------------


async def test_an_approved_task_runs_exactly_once_after_the_accepting_gateway_is_killed(
    workdir: Path, upstream: McpUpstreamServer
):
    # The accepting gateway runs no executor worker, so nothing can execute the call
    # before it is killed: the kill is after the approval and before any execution.
    server = _gateway(workdir / "crash", upstream, workers=0).start()
    client = ModernClient(server, server.token("agent:tasks"))
    value = "v-" + uuid.uuid4().hex
    created = await client.request(
        "tools/call", {"name": "up__write", "arguments": {"key": "k", "value": value}}
    )
    task_id = created["result"]["taskId"]
    await _approve(server, created["result"]["_meta"][META_KEY]["approval_id"])
    assert server.process is not None
    os.kill(server.process.popen.pid, signal.SIGKILL)
    server.process.popen.wait()
    assert _writes(upstream, value) == []

    server.config["executor"]["workers"] = 1
    server.start()
    try:
        client = ModernClient(server, server.token("agent:tasks"))

        async def completed() -> dict[str, Any] | None:
            state = await client.request("tasks/get", {"taskId": task_id})
            return state["result"] if state["result"]["status"] == "completed" else None

        done = await eventually_async(completed, "the task completed after the restart")
        assert done["result"]["content"][0]["text"] == "wrote k"
    finally:
        server.stop()
    # Restarted again: the result is read back, never run again.
    server.start()
    try:
        again = await ModernClient(server, server.token("agent:tasks")).request(
            "tasks/get", {"taskId": task_id}
        )
        assert again["result"]["status"] == "completed"
    finally:
        server.stop()
    assert len(_writes(upstream, value)) == 1
