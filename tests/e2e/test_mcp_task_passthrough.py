"""Upstreams' own tasks passed through the gateway (docs/decisions/0030), end to end:
a real gateway process in front of two processes of our tasks-serving test upstream
(`tests.support.tasks_upstream`), one speaking 2026-07-28 and the tasks extension, one
2025-11-25 and the experimental tasks; clients of both eras: the MCP SDK's own 2025
session (tasks requests sent raw on it: the SDK has no tasks client), raw 2026-07-28
requests, and the SDK's 2026 client resolving the task through its extension API.
Each case proves what reached the upstream from its call log, and that the audit log
holds the call's entries once and verifies."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim

from gateway.audit import read_entries
from gateway.audit.export import database_source
from gateway.store import create_engine
from gateway.tlog.verifier import verify_log
from tests.e2e.mcp_client import connect
from tests.support.processes import (
    GatewayServer,
    Process,
    free_port,
    read_calls,
    spawn,
    wait_for_port,
    write_policy,
)
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
    "io.modelcontextprotocol/clientInfo": {"name": "passthrough-test", "version": "1"},
}
GRANTS = [
    {"role": "agent", "tool": "new__research"},
    {"role": "agent", "tool": "old__research"},
    {"role": "agent", "tool": "new__echo"},
    {"role": "agent", "tool": "new__deploy", "approval": {"approvers": ["role:approver"]}},
]
UPSTREAMS = ("new", "old")  # 2026-07-28, 2025-11-25


@dataclass
class TasksUpstream:
    port: int
    call_log: Path
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return [c for c in read_calls(self.call_log) if method is None or c["method"] == method]

    def release(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/release", timeout=30).raise_for_status()

    def gate(self, gets: int) -> None:
        url = f"http://127.0.0.1:{self.port}/gate?gets={gets}"
        httpx.post(url, timeout=30).raise_for_status()

    @classmethod
    def start(cls, directory: Path, *, legacy: bool) -> TasksUpstream:
        port = free_port()
        call_log = directory / f"tasks-upstream-{port}.calls.jsonl"
        args = ["-m", "tests.support.tasks_upstream", str(port), str(call_log)]
        process = spawn(
            [sys.executable, *args, *(["legacy"] if legacy else [])],
            directory / f"tasks-upstream-{port}.log",
        )
        wait_for_port(port, process)
        return cls(port, call_log, process)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("passthrough")


@contextmanager
def started_upstreams(workdir: Path) -> Iterator[dict[str, TasksUpstream]]:
    """A 2026-07-28 tasks upstream ("new") and a 2025-11-25 one ("old")."""
    started = {
        "new": TasksUpstream.start(workdir, legacy=False),
        "old": TasksUpstream.start(workdir, legacy=True),
    }
    try:
        yield started
    finally:
        for upstream in started.values():
            upstream.process.stop()


@contextmanager
def tasks_gateway(
    workdir: Path, upstreams: dict[str, TasksUpstream], grants: list[dict[str, Any]]
) -> Iterator[GatewayServer]:
    """A gateway in front of ``upstreams`` with a policy granting ``grants``."""
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[
            {"name": name, "url": upstream.url, "timeout_s": 10}
            for name, upstream in upstreams.items()
        ],
        policy=write_policy(workdir, grants),
    )
    server.config["approvals"] = {"hold_s": 5, "sweep_interval_s": 0.5}
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def upstreams(workdir: Path) -> Iterator[dict[str, TasksUpstream]]:
    with started_upstreams(workdir) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(workdir: Path, upstreams: dict[str, TasksUpstream]) -> Iterator[GatewayServer]:
    with tasks_gateway(workdir, upstreams, GRANTS) as server:
        yield server


class ModernClient:
    """2026-07-28 raw requests, each declaring the tasks extension (``envelope``: the
    ``_meta`` each carries)."""

    def __init__(
        self, gateway: GatewayServer, token: str, envelope: dict[str, Any] | None = None
    ) -> None:
        self.gateway = gateway
        self.token = token
        self.envelope = envelope or ENVELOPE

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": {**params, "_meta": self.envelope},
        }
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
            "Mcp-Name": str(params.get("name", params.get("taskId", ""))),
        }
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(self.gateway.mcp_url, json=body, headers=headers)
        if response.headers["content-type"].startswith("text/event-stream"):
            data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
            return dict(json.loads(data[-1]))
        return dict(response.json())


class LegacyClient:
    """A 2025-11-25 session of the MCP SDK's client, tasks requests sent raw on it."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from mcp.shared.exceptions import MCPError

        try:
            result = await self.client.session._dispatcher.send_raw_request(method, params, {})
        except MCPError as error:
            return {"error": {"code": error.error.code, "message": error.error.message}}
        return {"result": result}


@pytest.fixture
async def legacy(gateway: GatewayServer) -> AsyncIterator[LegacyClient]:
    async with connect(gateway.mcp_url, gateway.token("agent:owner"), "legacy") as client:
        yield LegacyClient(client)


@pytest.fixture
async def legacy_other(gateway: GatewayServer) -> AsyncIterator[LegacyClient]:
    async with connect(gateway.mcp_url, gateway.token("agent:other"), "legacy") as client:
        yield LegacyClient(client)


def _audit(gateway: GatewayServer, kind: str, ref: str | None = None) -> list[Any]:
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        return [e for e in read_entries(engine, kind=kind) if ref is None or e.ref == ref]
    finally:
        engine.dispose()


async def _outcomes(gateway: GatewayServer, request_id: str) -> list[Any]:
    """The call's outcomes, once one is written (outcomes are queued, not awaited)."""
    return await eventually_async(
        lambda: _audit(gateway, "call.outcome", request_id), f"the outcome of {request_id}"
    )


def _verified(gateway: GatewayServer) -> None:
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        report = verify_log(database_source(engine))
    finally:
        engine.dispose()
    assert report.ok, [f.message for f in report.faults]


def _text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


# --- 2025-11-25 clients ---------------------------------------------------------------


async def test_tasks_list_asks_the_upstream_about_a_pages_tasks_together(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
) -> None:
    upstream = upstreams["old"]
    async with connect(gateway.mcp_url, gateway.token("agent:lister"), "legacy") as client:
        lister = LegacyClient(client)
        created = [
            await lister.request(
                "tools/call",
                {
                    "name": "old__research",
                    "arguments": {"topic": f"listed-{i}", "hold": True},
                    "task": {"ttl": 60000},
                },
            )
            for i in range(3)
        ]
        ids = {c["result"]["task"]["taskId"] for c in created}
        await anyio.to_thread.run_sync(upstream.gate, 3)
        try:
            listed = await lister.request("tasks/list", {})
        finally:
            await anyio.to_thread.run_sync(upstream.gate, 0)
    assert {t["taskId"] for t in listed["result"]["tasks"]} == ids
    assert all(t["status"] == "working" for t in listed["result"]["tasks"])
    # The three tasks/get were at the upstream at once (one at a time: never two).
    assert max(c["count"] for c in upstream.calls("tasks/get.in_flight")) == 3
    await anyio.to_thread.run_sync(upstream.release)


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_legacy_client_gets_the_upstreams_task_and_its_result_once(
    gateway: GatewayServer,
    upstreams: dict[str, TasksUpstream],
    legacy: LegacyClient,
    legacy_other: LegacyClient,
    name: str,
):
    upstream = upstreams[name]
    topic = f"legacy-{name}"
    created = await legacy.request(
        "tools/call",
        {
            "name": f"{name}__research",
            "arguments": {"topic": topic, "hold": True},
            "task": {"ttl": 60000},
        },
    )
    task = created["result"]["task"]
    assert task["taskId"].startswith("tsk_") and task["status"] == "working", created
    reached = [c for c in upstream.calls("tools/call") if c["arguments"]["topic"] == topic]
    assert len(reached) == 1  # passed through as a task, not run by the gateway
    if name == "old":
        assert reached[0]["task"] == {"ttl": 60000}
    else:
        assert (
            TASKS in reached[0]["meta"]["io.modelcontextprotocol/clientCapabilities"]["extensions"]
        )
    upstream_id = next(c["taskId"] for c in upstream.calls("task.created") if c["topic"] == topic)
    assert task["taskId"] != upstream_id  # the gateway's own id, never the upstream's

    # Another principal is told it does not exist, and nothing reaches the upstream.
    before = len(upstream.calls())
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        refused = await legacy_other.request(method, {"taskId": task["taskId"]})
        assert refused["error"]["code"] == -32602, refused
    # The upstream's own id is no id of the gateway's: nobody reaches a task through it.
    unknown = await legacy.request("tasks/get", {"taskId": upstream_id})
    assert unknown["error"]["code"] == -32602
    assert len(upstream.calls()) == before
    assert {e.payload["reason"] for e in _audit(gateway, "task.refused", task["taskId"])} == {
        "not_owner"
    }
    listed = await legacy_other.request("tasks/list", {})
    assert task["taskId"] not in {t["taskId"] for t in listed["result"]["tasks"]}

    got = await legacy.request("tasks/get", {"taskId": task["taskId"]})
    assert got["result"]["status"] == "working"
    mine = await legacy.request("tasks/list", {})
    assert task["taskId"] in {t["taskId"] for t in mine["result"]["tasks"]}

    upstream.release()
    first = await legacy.request("tasks/result", {"taskId": task["taskId"]})
    again = await legacy.request("tasks/result", {"taskId": task["taskId"]})
    assert _text(first["result"]) == f"findings on {topic}"
    assert _text(again["result"]) == _text(first["result"])
    assert (
        first["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == task["taskId"]
    )
    request_id = first["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    outcomes = await _outcomes(gateway, request_id)
    assert len(outcomes) == 1  # written at the first fetch, never again
    assert outcomes[0].payload["status"] == "ok"
    assert outcomes[0].payload["upstream_task_id"] == upstream_id
    assert len(_audit(gateway, "call.decision", request_id)) == 1
    _verified(gateway)


# --- 2026-07-28 clients ---------------------------------------------------------------


class _CreatedTask(types.Result):
    result_type: Literal["task"] = "task"
    task_id: str
    status: str


class _PolledTask(types.Result):
    task_id: str
    status: str
    result: dict[str, Any] | None = None


async def _resolve(task: _CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
    """Polls the gateway's task until it completed (bounded: the test's own timeout)."""
    request = types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task.task_id))
    while True:
        polled = await ctx.session.send_request(request, _PolledTask)
        if polled.status == "completed":
            return types.CallToolResult.model_validate(polled.result, by_name=False)
        assert polled.status == "working", polled
        await anyio.sleep(0.1)


class _TasksExtension(ClientExtension):
    """The tasks extension as an SDK client declares and resolves it (mcp 2.3 has the
    extension API, not this extension): the claim of ``resultType: "task"``."""

    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=_CreatedTask, resolve=_resolve)]


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_the_sdk_client_resolves_the_upstreams_task_through_the_gateway(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], name: str
):
    """A real MCP SDK client at 2026-07-28 with the tasks extension: ``call_tool``
    declares it, gets the gateway's task, polls it and returns the upstream's result."""
    upstream = upstreams[name]
    topic = f"sdk-{name}"
    results: list[types.CallToolResult] = []
    token = gateway.token("agent:owner")
    async with connect(gateway.mcp_url, token, MODERN, extensions=[_TasksExtension()]) as client:
        async with anyio.create_task_group() as calls:

            async def call() -> None:
                results.append(
                    await client.call_tool(f"{name}__research", {"topic": topic, "hold": True})
                )

            calls.start_soon(call)
            await eventually_async(
                lambda: [c for c in upstream.calls("task.created") if c["topic"] == topic],
                "the upstream's task",
            )
            upstream.release()
    assert _text(results[0].model_dump(by_alias=True)) == f"findings on {topic}"
    upstream_id = next(c["taskId"] for c in upstream.calls("task.created") if c["topic"] == topic)
    # The SDK client's polls reached the upstream's task, through the gateway's id.
    assert [c for c in upstream.calls("tasks/get") if c["taskId"] == upstream_id]


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_modern_client_gets_the_upstreams_task_with_its_result_inlined(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], name: str
):
    upstream = upstreams[name]
    owner = ModernClient(gateway, gateway.token("agent:owner"))
    other = ModernClient(gateway, gateway.token("agent:other"))
    topic = f"modern-{name}"
    created = await owner.request(
        "tools/call", {"name": f"{name}__research", "arguments": {"topic": topic, "hold": True}}
    )
    result = created["result"]
    assert result["resultType"] == "task" and result["status"] == "working", created
    task_id = result["taskId"]
    for method in ("tasks/get", "tasks/cancel"):
        refused = await other.request(method, {"taskId": task_id})
        assert refused["error"]["code"] == -32602, refused
    working = await owner.request("tasks/get", {"taskId": task_id})
    assert working["result"]["status"] == "working" and "result" not in working["result"]

    upstream.release()
    done = await owner.request("tasks/get", {"taskId": task_id})
    again = await owner.request("tasks/get", {"taskId": task_id})
    assert done["result"]["status"] == "completed", done
    assert _text(done["result"]["result"]) == f"findings on {topic}"
    assert again["result"]["result"] == done["result"]["result"]
    request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    assert len(await _outcomes(gateway, request_id)) == 1
    created_entries = _audit(gateway, "task.created", task_id)
    assert created_entries[0].payload["kind"] == "upstream"
    assert created_entries[0].payload["upstream"] == name
    _verified(gateway)


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_cancel_reaches_the_upstream_only_from_the_owner(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], name: str
):
    upstream = upstreams[name]
    owner = ModernClient(gateway, gateway.token("agent:owner"))
    other = ModernClient(gateway, gateway.token("agent:other"))
    created = await owner.request(
        "tools/call",
        {"name": f"{name}__research", "arguments": {"topic": f"c-{name}", "hold": True}},
    )
    task_id = created["result"]["taskId"]
    cancels = len(upstream.calls("tasks/cancel"))
    assert (await other.request("tasks/cancel", {"taskId": task_id}))["error"]["code"] == -32602
    assert len(upstream.calls("tasks/cancel")) == cancels
    acknowledged = await owner.request("tasks/cancel", {"taskId": task_id})
    assert "error" not in acknowledged, acknowledged
    assert len(upstream.calls("tasks/cancel")) == cancels + 1
    cancelled = await owner.request("tasks/get", {"taskId": task_id})
    assert cancelled["result"]["status"] == "cancelled"
    assert _audit(gateway, "task.cancelled", task_id)


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_a_legacy_client_cancels_and_reads_the_cancellation(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], legacy: LegacyClient, name: str
):
    created = await legacy.request(
        "tools/call",
        {
            "name": f"{name}__research",
            "arguments": {"topic": f"lc-{name}", "hold": True},
            "task": {},
        },
    )
    task_id = created["result"]["task"]["taskId"]
    cancelled = await legacy.request("tasks/cancel", {"taskId": task_id})
    assert cancelled["result"]["status"] == "cancelled", cancelled
    again = await legacy.request("tasks/cancel", {"taskId": task_id})
    assert again["error"]["code"] == -32602  # 2025-11-25: it already ended
    result = await legacy.request("tasks/result", {"taskId": task_id})
    assert result["result"]["isError"] is True
    request_id = result["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    outcomes = await _outcomes(gateway, request_id)
    assert [o.payload["status"] for o in outcomes] == ["error"]
    assert outcomes[0].payload["task_status"] == "cancelled"
    _verified(gateway)


async def test_a_denied_task_call_never_reaches_the_upstream(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
):
    stranger = ModernClient(gateway, gateway.token("agent:stranger", roles=("nobody",)))
    before = len(upstreams["new"].calls())
    denied = await stranger.request(
        "tools/call", {"name": "new__research", "arguments": {"topic": "denied", "hold": True}}
    )
    assert denied["result"]["isError"] is True, denied
    assert denied["result"]["_meta"]["io.agentgateway/decision"]["status"] == "denied"
    assert len(upstreams["new"].calls()) == before
    _verified(gateway)


async def test_a_call_the_upstream_answers_at_once_is_answered_as_usual(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
):
    """At 2026-07-28 the server decides: an upstream that serves tasks may still answer
    a task-capable call with its result, which the client gets as usual, its outcome
    recorded at once."""
    owner = ModernClient(gateway, gateway.token("agent:owner"))
    answered = await owner.request(
        "tools/call", {"name": "new__echo", "arguments": {"text": "plain"}}
    )
    assert _text(answered["result"]) == "plain"
    assert "taskId" not in answered["result"]
    echoed = [c for c in upstreams["new"].calls("tools/call") if c["tool"] == "echo"]
    capabilities = echoed[-1]["meta"]["io.modelcontextprotocol/clientCapabilities"]
    assert TASKS in capabilities["extensions"]
    request_id = answered["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    assert len(await _outcomes(gateway, request_id)) == 1


async def test_a_call_held_for_approval_is_the_gateways_task_not_the_upstreams(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
):
    """Policy holds it: the gateway's own held task (decision 0021), the upstream not
    called until approved, and then by the executor as a plain call."""
    owner = ModernClient(gateway, gateway.token("agent:owner"))
    before = len(upstreams["new"].calls())
    held = await owner.request("tools/call", {"name": "new__deploy", "arguments": {"topic": "x"}})
    assert held["result"]["resultType"] == "task", held
    assert held["result"]["_meta"]["io.agentgateway/decision"]["approval_id"]
    assert len(upstreams["new"].calls()) == before
    created = _audit(gateway, "task.created", held["result"]["taskId"])
    assert created[0].payload["kind"] == "held"
