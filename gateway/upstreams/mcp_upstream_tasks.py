"""An MCP upstream's own tasks, in its era: the client side of task pass-through
(docs/decisions/0030).

Whether an upstream runs a tool as a task: at 2026-07-28 when its ``server/discover``
announces the ``io.modelcontextprotocol/tasks`` extension (the server then decides per
call); at 2025-11-25 when its ``tasks.requests.tools.call`` capability is there and the
tool is listed with ``execution.taskSupport`` ``optional`` or ``required``.

A task-augmented call and ``tasks/*`` are sent through the connection's SDK session,
stamped like any request (`mcp_capabilities` declares the tasks extension, and the
caller's own capabilities, for the call): the SDK's client has the tasks' types but no
client for them, and it would read a ``tools/call`` answer as a ``CallToolResult``.
Every request runs inside the connection's `mcp_requests.run`, with the call's
credential headers and deadline, its failures mapped as every other's.

What comes back is normalized (`TaskView`) whatever the era: the surface renders it in
its client's era, which need not be the upstream's. A task waiting for input
(docs/decisions/0041): at 2025-11-25 its requests come on a ``tasks/result`` stream,
relayed through the caller's `ClientInput` like any request's; at 2026-07-28 they are
the ``inputRequests`` of its ``tasks/get``, answered with `update` (``tasks/update``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp import Client
from mcp_types import CallToolResult
from pydantic import ValidationError

from gateway.errors import UpstreamError, UpstreamRejected
from gateway.operations import ClientInput, TaskRequest
from gateway.telemetry import TRACEPARENT
from gateway.types import ToolResult, UpstreamTask
from gateway.upstreams import mcp_capabilities, mcp_requests
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_lean_call import is_sessionless

TERMINAL = frozenset({"completed", "failed", "cancelled"})
STATUSES = TERMINAL | {"working", "input_required"}

Request = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class TaskView:
    """An upstream task's state as it reported it; ``result`` once completed (and
    asked for), ``error`` (code, message) once failed without one; ``input_requests``
    (wire form, the upstream's keys) while it waits for input at 2026-07-28."""

    status: str
    message: str | None
    result: ToolResult | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL


class UpstreamTasks:
    """The tasks of one upstream connection: ``request`` is its `McpConnection.request`
    (headers, deadline, errors), ``connected`` its live client."""

    def __init__(
        self,
        name: str,
        connected: Callable[[], Awaitable[Client]],
        current: Callable[[], Client | None],
        request: Request,
    ) -> None:
        self.name = name
        self._connected = connected
        self._current = current
        self._request = request
        # 2025-11-25: each tool's execution.taskSupport, as last listed.
        self._support: dict[str, str] = {}

    def learn(self, tools: list[UpstreamTool]) -> None:
        self._support = {t.name: t.task_support for t in tools if t.task_support}

    def serves(self, tool: str) -> bool:
        """Whether a task-augmented call of ``tool`` may be passed through."""
        client = self._current()
        capabilities = client.server_capabilities if client is not None else None
        if client is None or capabilities is None:
            return False
        if is_sessionless(client.protocol_version):
            return mcp_capabilities.TASKS_EXTENSION in (capabilities.extensions or {})
        requests = capabilities.tasks.requests if capabilities.tasks is not None else None
        calls = requests.tools.call if requests is not None and requests.tools else None
        return calls is not None and self._support.get(tool) in ("optional", "required")

    def asks_on_result_stream(self) -> bool:
        """Whether this upstream sends what a task waits for on a ``tasks/result``
        stream (2025-11-25), not in ``inputRequests`` (2026-07-28)."""
        client = self._current()
        return client is not None and not is_sessionless(client.protocol_version)

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        task: TaskRequest,
        meta: Mapping[str, Any] | None,
        headers: dict[str, str],
        timeout_s: float,
        client_input: ClientInput | None,
    ) -> ToolResult | UpstreamTask:
        """A ``tools/call`` asking the upstream to run it as a task: the task it created,
        or the result when it ran the call at once (2026-07-28: the server decides)."""
        client = await self._connected()
        if TRACEPARENT in headers:  # a traced call (gateway.telemetry)
            meta = mcp_requests.with_trace(dict(meta or {}), headers)
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        if meta:
            params["_meta"] = dict(meta)
        if not is_sessionless(client.protocol_version):
            params["task"] = {} if task.ttl_ms is None else {"ttl": task.ttl_ms}

        async def send() -> dict[str, Any]:
            with mcp_capabilities.declaring(mcp_capabilities.of(client_input, tasks=True)):
                return await _raw(client, "tools/call", params, timeout_s)

        raw = await self._request(
            tool, send, headers=headers, log=None, timeout_s=timeout_s, client_input=client_input
        )
        fields = raw.get("task") if "task" in raw else raw
        if raw.get("resultType") == "task" or "task" in raw:
            return self._task(tool, fields)
        if raw.get("resultType", "complete") != "complete":
            raise UpstreamError(
                f"upstream {self.name} answered the task-augmented {tool} with a "
                f"{raw.get('resultType')!r} result, which the gateway does not pass through"
            )
        return self._tool_result(tool, raw)

    async def get(
        self,
        task_id: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        with_result: bool,
        client_input: ClientInput | None = None,
    ) -> TaskView:
        """The task's state; with its result once it ended, if ``with_result`` (at
        2025-11-25 that is a ``tasks/result``, which answers at once for a task that
        ended; at 2026-07-28 ``tasks/get`` inlines it).

        ``client_input``: how its owner is asked what the task waits for. At
        2025-11-25 a task in ``input_required`` sends its requests on the stream of a
        ``tasks/result``: with a ``client_input`` one is sent at once, its requests
        relayed through it (`mcp_client_input.relay_input`) until the task ended. At
        2026-07-28 the requests are in ``inputRequests``, answered with `update`."""
        client = await self._connected()
        raw = await self._send(client, "tasks/get", task_id, headers, timeout_s)
        status = raw.get("status")
        if status not in STATUSES:
            raise UpstreamError(f"upstream {self.name} reported task {task_id} as {status!r}")
        message = raw.get("statusMessage") if isinstance(raw.get("statusMessage"), str) else None
        asked = raw.get("inputRequests")
        if status == "input_required" and isinstance(asked, dict):
            return TaskView(status, message, input_requests=asked)
        view = TaskView(status, message)
        sessionless = is_sessionless(client.protocol_version)
        if status == "input_required" and not sessionless and client_input is not None:
            return await self._result_with_input(client, task_id, headers, timeout_s, client_input)
        if not with_result or status not in TERMINAL:
            return view
        if is_sessionless(client.protocol_version):
            result = raw.get("result")
            error = raw.get("error")
            if isinstance(result, dict):
                return TaskView(status, message, result=self._tool_result(task_id, result))
            return TaskView(status, message, error=error if isinstance(error, dict) else None)
        if status == "cancelled":
            return view
        try:
            payload = await self._send(client, "tasks/result", task_id, headers, timeout_s)
        except UpstreamRejected as exc:  # a failed task's result may be its error
            return TaskView(status, message, error={"code": exc.rpc_code, "message": exc.message})
        return TaskView(status, message, result=self._tool_result(task_id, payload))

    async def _result_with_input(
        self,
        client: Client,
        task_id: str,
        headers: dict[str, str],
        timeout_s: float,
        client_input: ClientInput,
    ) -> TaskView:
        """2025-11-25: the ``tasks/result`` of a task waiting for input, its requests
        relayed to the owner as it sends them; then the state it ended in."""
        try:
            payload = await self._send(
                client, "tasks/result", task_id, headers, timeout_s, client_input=client_input
            )
        except UpstreamRejected as exc:  # it failed (a refused answer, say)
            view = await self.get(task_id, headers=headers, timeout_s=timeout_s, with_result=False)
            error = {"code": exc.rpc_code, "message": exc.message}
            return TaskView(view.status if view.ended else "failed", view.message, error=error)
        view = await self.get(task_id, headers=headers, timeout_s=timeout_s, with_result=False)
        result = self._tool_result(task_id, payload)
        return TaskView(view.status if view.ended else "completed", view.message, result=result)

    async def update(
        self,
        task_id: str,
        answers: dict[str, Any],
        *,
        headers: dict[str, str],
        timeout_s: float,
    ) -> None:
        """2026-07-28 ``tasks/update``: the client's answers to the task's
        ``inputRequests``, under the keys it asked them."""
        client = await self._connected()
        params = {"taskId": task_id, "inputResponses": answers}
        await self._request(
            f"tasks/update of its task {task_id}",
            lambda: _raw(client, "tasks/update", params, timeout_s),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
        )

    async def cancel(self, task_id: str, *, headers: dict[str, str], timeout_s: float) -> None:
        client = await self._connected()
        await self._send(client, "tasks/cancel", task_id, headers, timeout_s)

    async def _send(
        self,
        client: Client,
        method: str,
        task_id: str,
        headers: dict[str, str],
        timeout_s: float,
        *,
        client_input: ClientInput | None = None,
    ) -> dict[str, Any]:
        return await self._request(
            f"{method} of its task {task_id}",
            lambda: _raw(client, method, {"taskId": task_id}, timeout_s),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
            client_input=client_input,
        )

    def _task(self, tool: str, fields: Any) -> UpstreamTask:
        if not isinstance(fields, dict) or not isinstance(fields.get("taskId"), str):
            raise UpstreamError(f"upstream {self.name} answered {tool} with a malformed task")
        ttl = fields.get("ttlMs", fields.get("ttl"))
        return UpstreamTask(
            upstream=self.name,
            task_id=fields["taskId"],
            status=str(fields.get("status", "working")),
            message=fields.get("statusMessage")
            if isinstance(fields.get("statusMessage"), str)
            else None,
            ttl_ms=ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
        )

    def _tool_result(self, what: str, raw: dict[str, Any]) -> ToolResult:
        try:
            return to_result(CallToolResult.model_validate(raw, by_name=False))
        except ValidationError as exc:
            raise UpstreamError(
                f"upstream {self.name} answered {what} with a malformed tool result: "
                f"{exc.error_count()} validation error(s)"
            ) from None


async def _raw(client: Client, method: str, params: dict[str, Any], timeout_s: float) -> Any:
    """One request on the session, stamped as the SDK stamps its own (era, headers,
    ``_meta`` envelope), its result unparsed."""
    session = client.session
    data: dict[str, Any] = {"method": method, "params": params}
    opts: Any = {"timeout": timeout_s}
    session._stamp(data, opts)
    return await session._dispatcher.send_raw_request(method, data.get("params"), opts)


def to_result(result: CallToolResult) -> ToolResult:
    """A tool result rebuilt from content, structuredContent and isError only: the
    upstream's ``_meta`` (result-level and per content item) is not forwarded
    (architecture.md §7)."""
    content = []
    for item in result.content:
        data = item.model_dump(by_alias=True, exclude_none=True, mode="json")
        data.pop("_meta", None)
        content.append(data)
    return ToolResult(
        content=content,
        structured_content=result.structured_content,
        is_error=bool(result.is_error),
    )
