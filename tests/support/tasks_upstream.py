"""A test upstream MCP server that serves tasks itself, in either era.

    python -m tests.support.tasks_upstream PORT CALL_LOG [legacy]

Modern (the default): it speaks 2026-07-28 and the ``io.modelcontextprotocol/tasks``
extension (announced in ``server/discover``): a ``tools/call`` of ``research`` whose
request declares the extension is answered ``resultType: "task"``; ``tasks/get``
inlines the result; ``tasks/cancel`` acknowledges. ``legacy``: it refuses
``server/discover`` (so a client falls back to the 2025-11-25 handshake) and serves the
experimental tasks: ``tasks`` in its capabilities, ``research`` listed with
``execution.taskSupport: "optional"``, a ``tools/call`` with ``params.task`` answered
``{"task": …}``, and ``tasks/get``, ``tasks/result``, ``tasks/list``, ``tasks/cancel``.

A task of ``research`` with ``hold: true`` stays ``working`` until the test posts to
``/release`` (or it is cancelled); without, it is completed when created. After a
post to ``/gate?gets=N``, each ``tasks/get`` waits until N are in flight at once. Every
request that reaches the server (tool calls and ``tasks/*``, with the ``_meta`` it
carried) is appended to CALL_LOG, one JSON line each, so a test proves what reached
the upstream and what did not.
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
RELATED_TASK_META = "io.modelcontextprotocol/related-task"
CALL_LOG = Path("/dev/null")
_TASKS: dict[str, dict[str, Any]] = {}
_DONE: dict[str, anyio.Event] = {}
_GATE: dict[str, Any] = {"want": 0, "in_flight": 0, "open": None}
GATE_WAIT_S = 30.0  # far longer than answering a page takes; only a bound


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _meta(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    meta: Any = ctx.meta or {}
    return meta if isinstance(meta, dict) else meta.model_dump(by_alias=True)


def _record(method: str, detail: dict[str, Any], meta: dict[str, Any]) -> None:
    with CALL_LOG.open("a") as log:
        log.write(json.dumps({"method": method, **detail, "meta": meta}) + "\n")


def _result(topic: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": f"findings on {topic}"}], "isError": False}


def _create(topic: str, hold: bool, ttl: int | None) -> dict[str, Any]:
    task_id = "up-" + secrets.token_hex(8)
    now = _now()
    task = {
        "taskId": task_id,
        "status": "working" if hold else "completed",
        "statusMessage": f"researching {topic}",
        "createdAt": now,
        "lastUpdatedAt": now,
        "ttl": ttl or 600_000,
        "topic": topic,
    }
    _TASKS[task_id] = task
    _record("task.created", {"taskId": task_id, "topic": topic}, {})
    _DONE[task_id] = anyio.Event()
    if not hold:
        _DONE[task_id].set()
    return task


def _fields(task: dict[str, Any], modern: bool) -> dict[str, Any]:
    common = {
        k: task[k] for k in ("taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt")
    }
    if modern:
        fields = {**common, "ttlMs": task["ttl"], "pollIntervalMs": 100}
        if task["status"] == "completed":
            fields["result"] = _result(task["topic"])
        elif task["status"] == "failed":
            fields["error"] = {"code": -32603, "message": "research failed"}
        return fields
    return {**common, "ttl": task["ttl"], "pollInterval": 100}


def _modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _task(task_id: str) -> dict[str, Any]:
    task = _TASKS.get(task_id)
    if task is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"no task {task_id}")
    return task


RESEARCH = types.Tool(
    name="research",
    description="Researches a topic, as a task when asked (hold: stay working until released).",
    input_schema={
        "type": "object",
        "properties": {"topic": {"type": "string"}, "hold": {"type": "boolean"}},
        "required": ["topic"],
    },
    execution=types.ToolExecution(task_support="optional"),
)
DEPLOY = types.Tool(
    name="deploy",
    description="Pretends to deploy (a task when asked; the tests' policy holds it for approval).",
    input_schema={"type": "object", "properties": {"topic": {"type": "string"}}},
    execution=types.ToolExecution(task_support="optional"),
)
ECHO = types.Tool(
    name="echo",
    description="Returns the text (never a task).",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
)


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[RESEARCH, DEPLOY, ECHO])


async def call_tool(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
    meta = _meta(ctx)
    arguments = params.arguments or {}
    _record("tools/call", {"tool": params.name, "arguments": arguments}, meta)
    if params.name == "echo":
        return types.CallToolResult(content=[types.TextContent(text=str(arguments.get("text")))])
    if params.name == "deploy":
        return types.CallToolResult(content=[types.TextContent(text="deployed")])
    if params.name != "research":
        raise MCPError(code=types.INVALID_PARAMS, message=f"no tool {params.name}")
    extensions = (meta.get(CAPABILITIES_META) or {}).get("extensions") or {}
    if _modern(ctx) and TASKS_EXTENSION in extensions:
        task = _create(arguments["topic"], bool(arguments.get("hold")), None)
        return {"resultType": "task", **_fields(task, True)}
    return _result(arguments["topic"])


async def legacy_task_call(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """2025-11-25: a task-augmented call answered with a task (the SDK would check its
    answer as a CallToolResult)."""
    params = ctx.params
    if ctx.method != "tools/call" or _modern(ctx) or not isinstance(params, dict):
        return await call_next(ctx)
    if params.get("task") is None or params.get("name") != "research":
        return await call_next(ctx)
    arguments = params.get("arguments") or {}
    _record(
        "tools/call",
        {"tool": "research", "arguments": arguments, "task": params["task"]},
        _meta(ctx),
    )
    task = _create(arguments["topic"], bool(arguments.get("hold")), params["task"].get("ttl"))
    return {"task": _fields(task, False)}


async def get_task(ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
    _record("tasks/get", {"taskId": params.task_id}, _meta(ctx))
    if _GATE["want"]:
        await _gated()
    return _fields(_task(params.task_id), _modern(ctx))


async def _gated() -> None:
    """Holds a ``tasks/get`` until ``want`` of them are in flight at once, recording how
    many were; bounded, so a client asking one at a time is only slowed."""
    _GATE["in_flight"] += 1
    _record("tasks/get.in_flight", {"count": _GATE["in_flight"]}, {})
    if _GATE["in_flight"] >= _GATE["want"]:
        _GATE["open"].set()
    try:
        with anyio.move_on_after(GATE_WAIT_S):
            await _GATE["open"].wait()
    finally:
        _GATE["in_flight"] -= 1


async def task_result(ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
    _record("tasks/result", {"taskId": params.task_id}, _meta(ctx))
    task = _task(params.task_id)
    await _DONE[params.task_id].wait()
    if task["status"] == "cancelled":
        raise MCPError(code=types.INVALID_PARAMS, message=f"task {params.task_id} was cancelled")
    return {**_result(task["topic"]), "_meta": {RELATED_TASK_META: {"taskId": task["taskId"]}}}


async def list_tasks(ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
    _record("tasks/list", {}, _meta(ctx))
    return {"tasks": [_fields(task, False) for task in _TASKS.values()]}


async def cancel_task(ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
    _record("tasks/cancel", {"taskId": params.task_id}, _meta(ctx))
    task = _task(params.task_id)
    if task["status"] == "working":
        task.update(status="cancelled", statusMessage="cancelled", lastUpdatedAt=_now())
        _DONE[params.task_id].set()
    return {} if _modern(ctx) else _fields(task, False)


async def gate(request: Request) -> JSONResponse:
    """Test hook: ``?gets=N`` holds each ``tasks/get`` until N are in flight (0: none
    held), so a test sees whether a client asks them together."""
    _GATE.update(want=int(request.query_params["gets"]), in_flight=0, open=anyio.Event())
    return JSONResponse({"gets": _GATE["want"]})


async def release(request: Request) -> JSONResponse:
    """Test hook: every held task completes."""
    for task_id, task in _TASKS.items():
        if task["status"] == "working":
            task.update(status="completed", statusMessage="done", lastUpdatedAt=_now())
            _DONE[task_id].set()
    return JSONResponse({"released": True})


def build(legacy: bool) -> Any:
    server = Server(
        "tasks-upstream", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool
    )
    server.add_request_handler("tasks/get", types.GetTaskRequestParams, get_task)
    server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, cancel_task)
    if legacy:
        server.middleware.append(legacy_task_call)
        server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, task_result)
        server.add_request_handler("tasks/list", types.PaginatedRequestParams, list_tasks)
        original = server.create_initialization_options

        def with_tasks(*args: Any, **kwargs: Any) -> Any:
            options = original(*args, **kwargs)
            options.capabilities.tasks = types.ServerTasksCapability.model_validate(
                {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
            )
            return options

        server.create_initialization_options = with_tasks  # type: ignore[method-assign]
    else:
        server.extensions[TASKS_EXTENSION] = {}
    app = server.streamable_http_app(
        stateless_http=True,
        custom_starlette_routes=[
            Route("/release", release, methods=["POST"]),
            Route("/gate", gate, methods=["POST"]),
        ],
    )
    return _refusing_discover(app) if legacy else app


def _refusing_discover(app: Any) -> Any:
    """An ASGI wrapper answering ``server/discover`` as a server of 2025-11-25 only does."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/mcp":
            await app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("method") == "server/discover":
            error = {"code": types.METHOD_NOT_FOUND, "message": "Method not found"}
            response = JSONResponse({"jsonrpc": "2.0", "id": parsed.get("id"), "error": error})
            await response(scope, receive, send)
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return wrapped


if __name__ == "__main__":
    CALL_LOG = Path(sys.argv[2])
    legacy_mode = len(sys.argv) > 3 and sys.argv[3] == "legacy"
    uvicorn.run(build(legacy_mode), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
