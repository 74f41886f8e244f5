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
``/release`` (or it is cancelled); without, it is completed when created.

A task of ``ask`` waits for its client's input from the start (``input_required``),
as each era has it: legacy, ``tasks/result`` sends an ``elicitation/create`` on its
own stream (``related-task`` in its ``_meta``; so this mode keeps sessions) and
``notifications/tasks/status`` as the task moves; modern, ``tasks/get`` carries the
request in ``inputRequests`` and ``tasks/update`` brings the answer. An accepted
answer completes the task (``confirmed <topic>: <content>``), a declined one too
(``declined <topic>``); an error in place of an answer fails it. Every answer or
refusal is in the call log (``task.answered``). After a
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
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field
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


def _result(topic: str, answer: str | None = None) -> dict[str, Any]:
    text = answer if answer is not None else f"findings on {topic}"
    return {"content": [{"type": "text", "text": text}], "isError": False}


def _create(topic: str, hold: bool, ttl: int | None, *, asks: bool = False) -> dict[str, Any]:
    task_id = "up-" + secrets.token_hex(8)
    now = _now()
    task = {
        "taskId": task_id,
        "status": "input_required" if asks else ("working" if hold else "completed"),
        "statusMessage": f"confirm {topic}?" if asks else f"researching {topic}",
        "createdAt": now,
        "lastUpdatedAt": now,
        "ttl": ttl or 600_000,
        "topic": topic,
    }
    _TASKS[task_id] = task
    _record("task.created", {"taskId": task_id, "topic": topic}, {})
    _DONE[task_id] = anyio.Event()
    if not hold and not asks:
        _DONE[task_id].set()
    if asks:
        task["answer"] = None
    return task


def _question(task: dict[str, Any]) -> dict[str, Any]:
    """What an ``ask`` task asks its client (an elicitation in form mode)."""
    return {
        "mode": "form",
        "message": f"Confirm research on {task['topic']}?",
        "requestedSchema": {
            "type": "object",
            "properties": {"note": {"type": "string"}},
            "required": ["note"],
        },
    }


def _answered(task: dict[str, Any], answer: dict[str, Any] | None, error: str | None) -> None:
    """An ``ask`` task given its client's answer (or a refusal in its place) ends."""
    _record("task.answered", {"taskId": task["taskId"], "answer": answer, "error": error}, {})
    if task["status"] == "cancelled":
        return  # cancelled while it waited: an answer (or its error) changes nothing
    if error is not None:
        task.update(status="failed", statusMessage=f"no answer: {error}", lastUpdatedAt=_now())
    elif (answer or {}).get("action") == "accept":
        note = (answer.get("content") or {}).get("note")
        task.update(status="completed", statusMessage="confirmed", lastUpdatedAt=_now())
        task["answer"] = f"confirmed {task['topic']}: {note}"
    else:
        task.update(status="completed", statusMessage="declined", lastUpdatedAt=_now())
        task["answer"] = f"declined {task['topic']}"
    _DONE[task["taskId"]].set()


def _fields(task: dict[str, Any], modern: bool) -> dict[str, Any]:
    common = {
        k: task[k] for k in ("taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt")
    }
    if modern:
        fields = {**common, "ttlMs": task["ttl"], "pollIntervalMs": 100}
        if task["status"] == "completed":
            fields["result"] = _result(task["topic"], task.get("answer"))
        elif task["status"] == "failed":
            fields["error"] = {"code": -32603, "message": task["statusMessage"]}
        elif task["status"] == "input_required":
            question = {"method": "elicitation/create", "params": _question(task)}
            fields["inputRequests"] = {"confirm": question}
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
ASK = types.Tool(
    name="ask",
    description="Researches a topic once the user confirms it (a task that asks for input).",
    input_schema={"type": "object", "properties": {"topic": {"type": "string"}}},
    execution=types.ToolExecution(task_support="optional"),
)
ECHO = types.Tool(
    name="echo",
    description="Returns the text (never a task).",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
)


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[RESEARCH, DEPLOY, ECHO, ASK])


async def call_tool(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
    meta = _meta(ctx)
    arguments = params.arguments or {}
    _record("tools/call", {"tool": params.name, "arguments": arguments}, meta)
    if params.name == "echo":
        return types.CallToolResult(content=[types.TextContent(text=str(arguments.get("text")))])
    if params.name == "deploy":
        return types.CallToolResult(content=[types.TextContent(text="deployed")])
    if params.name not in ("research", "ask"):
        raise MCPError(code=types.INVALID_PARAMS, message=f"no tool {params.name}")
    extensions = (meta.get(CAPABILITIES_META) or {}).get("extensions") or {}
    if _modern(ctx) and TASKS_EXTENSION in extensions:
        asks = params.name == "ask"
        task = _create(arguments["topic"], bool(arguments.get("hold")), None, asks=asks)
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
    if params.get("task") is None or params.get("name") not in ("research", "ask"):
        return await call_next(ctx)
    arguments = params.get("arguments") or {}
    _record(
        "tools/call",
        {"tool": params["name"], "arguments": arguments, "task": params["task"]},
        _meta(ctx),
    )
    hold = bool(arguments.get("hold"))
    ttl = params["task"].get("ttl")
    task = _create(arguments["topic"], hold, ttl, asks=params["name"] == "ask")
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
    if task["status"] == "input_required":
        await _ask_on_stream(ctx, task)
    await _DONE[params.task_id].wait()
    if task["status"] == "cancelled":
        raise MCPError(code=types.INVALID_PARAMS, message=f"task {params.task_id} was cancelled")
    if task["status"] == "failed":
        raise MCPError(code=types.INTERNAL_ERROR, message=task["statusMessage"])
    related = {RELATED_TASK_META: {"taskId": task["taskId"]}}
    return {**_result(task["topic"], task.get("answer")), "_meta": related}


async def _ask_on_stream(ctx: ServerRequestContext[Any, Any], task: dict[str, Any]) -> None:
    """2025-11-25: the task's request for input, on the ``tasks/result`` stream, tagged
    with the task it is for; the status notifications as it moves."""
    related = {RELATED_TASK_META: {"taskId": task["taskId"]}}
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    await _notify_status(ctx, task)
    request = types.ElicitRequest(
        params=types.ElicitRequestFormParams.model_validate(
            {**_question(task), "_meta": related}, by_name=False
        )
    )
    try:
        answer = await ctx.session.send_request(
            request, types.ElicitResult, request_read_timeout_seconds=30, metadata=metadata
        )
    except MCPError as error:
        _answered(task, None, error.error.message)
    else:
        _answered(task, answer.model_dump(by_alias=True, exclude_none=True, mode="json"), None)
    await _notify_status(ctx, task)


async def _notify_status(ctx: ServerRequestContext[Any, Any], task: dict[str, Any]) -> None:
    params = types.TaskStatusNotificationParams.model_validate(_fields(task, False), by_name=False)
    notification = types.TaskStatusNotification(params=params)
    await ctx.session.send_notification(notification, related_request_id=ctx.request_id)  # type: ignore[arg-type]


class UpdateTaskParams(types.RequestParams):
    """``tasks/update`` of the 2026-07-28 tasks extension."""

    task_id: str = Field(alias="taskId")
    input_responses: dict[str, Any] = Field(alias="inputResponses")


async def update_task(
    ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
) -> dict[str, Any]:
    _record(
        "tasks/update",
        {"taskId": params.task_id, "inputResponses": params.input_responses},
        _meta(ctx),
    )
    task = _task(params.task_id)
    if task["status"] == "input_required" and "confirm" in params.input_responses:
        _answered(task, params.input_responses["confirm"], None)
    return {}


async def list_tasks(ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
    _record("tasks/list", {}, _meta(ctx))
    return {"tasks": [_fields(task, False) for task in _TASKS.values()]}


async def cancel_task(ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
    _record("tasks/cancel", {"taskId": params.task_id}, _meta(ctx))
    task = _task(params.task_id)
    if task["status"] in ("working", "input_required"):
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
        server.add_request_handler("tasks/update", UpdateTaskParams, update_task)
    app = server.streamable_http_app(
        # Legacy keeps sessions: an ``ask`` task's request on the tasks/result stream
        # needs its answer to come back to the same server session.
        stateless_http=not legacy,
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
