"""Tasks on the MCP surface (docs/mcp.md, "Tasks"; docs/decisions/0021): a tool call
that policy holds for approval, from a client that can take a task, is answered at
once with a task instead of holding the request.

Both eras:

- 2025-11-25 (experimental tasks): a ``tools/call`` with ``params.task`` is answered
  with ``CreateTaskResult`` (``{"task": {...}}``): the held call's task, or, for a call
  that did not need to wait, a completed task holding its result (the specification
  wants a task for a task-augmented request). ``tasks/get``, ``tasks/result`` (waits
  up to ``approvals.hold_s`` for the task to end), ``tasks/list`` (the caller's own),
  ``tasks/cancel``.
- 2026-07-28 (the ``io.modelcontextprotocol/tasks`` extension, declared per request in
  ``_meta`` client capabilities): a held call is answered ``resultType: "task"``;
  any other call gets its result as usual (the server decides). ``tasks/get`` inlines
  the ``result`` (completed) or ``error`` (failed); ``tasks/cancel`` acknowledges;
  ``tasks/result`` and ``tasks/list`` do not exist there (-32601).

A held call's task stands on the approval and on a one-step run the executor executes
once the approval is decided (`gateway.executor.held_calls`; created by
`mcp_task_creation`): exactly once, whichever process runs it, after any restart. A
task is visible only to the identity that created it; anyone else is told it does not
exist (-32602), and the refusal is audited (``task.refused``). ``task.created`` and
``task.cancelled`` are audited too; the call's own entries (attempt, decision,
approval, the execution's outcome) are the pipeline's and the approvals engine's, as
for any held call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from gateway.audit import AuditLog, AuditRecord
from gateway.errors import REFUSED, AuditUnavailable, ClientInputRefused
from gateway.executor import held_calls
from gateway.executor.errors import RunFinished
from gateway.executor.service import Executor
from gateway.operations import TaskRequest
from gateway.pipeline import Pipeline
from gateway.surfaces.mcp_calls import caller_of, raise_unless_result, run, tools_call_operation
from gateway.surfaces.mcp_context import http_request, meta_dict
from gateway.surfaces.mcp_passthrough import Passthrough
from gateway.surfaces.mcp_relay import InputRelay
from gateway.surfaces.mcp_relay_capabilities import capabilities_of
from gateway.surfaces.mcp_results import META_KEY, outcome_meta, to_call_tool_result
from gateway.surfaces.mcp_task_creation import TaskCreation
from gateway.surfaces.mcp_task_input import RELATED_TASK_META, PolledChannel, owner_input
from gateway.surfaces.mcp_task_results import (
    answered_state,
    failed_result,
    refusal_meta,
    task_envelope,
)
from gateway.surfaces.mcp_task_states import TaskStates
from gateway.surfaces.mcp_task_store import DEFAULT_TTL_MS, MAX_TTL_MS, TaskRow, TaskStore
from gateway.surfaces.mcp_views import View
from gateway.types import OutcomeStatus, Principal, UpstreamTask

log = logging.getLogger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
LIST_PAGE = 50
_RESULT_POLL_S = 0.5


def declares_tasks(meta: Any) -> bool:
    """Whether a 2026-07-28 request's ``_meta`` declares the tasks extension."""
    capabilities = meta.get(CLIENT_CAPABILITIES_META) if isinstance(meta, Mapping) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, Mapping) else None
    return isinstance(extensions, Mapping) and TASKS_EXTENSION in extensions


class McpTasks:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        executor: Executor,
        store: TaskStore,
        audit: AuditLog,
        public_url: str,
        result_wait_s: float,
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.store = store
        self.audit = audit
        self.public_url = public_url.rstrip("/")
        self.result_wait_s = result_wait_s
        # Tools the gateway offers itself on /mcp (never held, so never a task).
        self.declines: Callable[[str], bool] = lambda name: False
        # Upstreams' own tasks (docs/decisions/0030).
        self.passthrough = Passthrough(pipeline, store, audit)
        # The relay of requests for client input, and whether a request is of a session
        # (set where the MCP server is built, `serve_tasks`): what an upstream task
        # waits for reaches its owner through them (docs/decisions/0041).
        self.relay: InputRelay | None = None
        self.in_session: Callable[[ServerRequestContext[Any, Any]], bool] = lambda ctx: False
        self.states = TaskStates(self.passthrough, executor, self.public_url)
        # The gateway's own tasks: a held call's, a call answered at once.
        self.creation = TaskCreation(executor, store, audit, self.states)

    # --- tools/call as a task ---------------------------------------------------------

    async def close(self) -> None:
        """Stops what this process holds for tasks (`TaskStreams.close`)."""
        if self.passthrough.streams is not None:
            await self.passthrough.streams.close()

    def wants_task(self, ctx: ServerRequestContext[Any, Any], params: Any) -> bool:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return declares_tasks(meta_dict(ctx.meta))
        return getattr(params, "task", None) is not None

    async def middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """2025-11-25: a task-augmented ``tools/call`` is answered here, because the
        SDK would check its answer against ``CallToolResult``."""
        params = ctx.params
        if (
            ctx.method != "tools/call"
            or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            or not isinstance(params, Mapping)
            or params.get("task") is None
        ):
            return await call_next(ctx)
        typed = types.CallToolRequestParams.model_validate(params, by_name=False)
        if View.of(http_request(ctx)).aggregated and self.declines(typed.name):
            return await call_next(ctx)
        return await self.call_tool(ctx, typed)

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> dict[str, Any]:
        """Runs the call without holding it; a held call becomes a task."""
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        request = http_request(ctx)
        operation = tools_call_operation(request, params, progress=None, hold_s=0)
        ttl = getattr(params.task, "ttl", None)
        if self.passthrough.accepts(operation.target):  # the upstream's own task
            operation = replace(operation, task=TaskRequest(ttl))
        outcome = await run(self.pipeline, operation)
        raise_unless_result(outcome, params.name)
        view = View.of(request)
        if isinstance(outcome.result, UpstreamTask):
            row, state = await self.passthrough.created(operation, outcome.result, view, ttl)
        elif outcome.status is OutcomeStatus.PENDING_APPROVAL and outcome.approval_id:
            row, state = await self.creation.hold(operation, outcome, view)
        else:
            wire = to_call_tool_result(outcome, view)
            if modern:
                return wire  # nothing to wait for: the result itself
            ttl_ms = min(int(ttl or DEFAULT_TTL_MS), MAX_TTL_MS)
            row = await self.creation.create(
                operation, view, kind="result", ttl_ms=ttl_ms, result=wire
            )
            state = answered_state(wire)
        meta = {META_KEY: {**outcome_meta(outcome), **self.states.links(row)}}
        return {**task_envelope(row, state, modern), "_meta": meta}

    # --- tasks/* ----------------------------------------------------------------------

    async def get(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetTaskRequestParams
    ) -> dict[str, Any]:
        row = await self._owned(ctx, params.task_id, "tasks/get")
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        # A 2026-07-28 owner is shown what its upstream task waits for, as far as what it
        # declared on this request lets it be asked (docs/decisions/0041).
        polled = PolledChannel(capabilities_of(ctx.meta)) if modern else None
        principal = caller_of(http_request(ctx))
        state = await self.states.of(row, principal, with_result=modern, polled=polled)
        if modern and state.status == "input_required" and state.input_requests is None:
            # Nothing of what it waits for is held here to show (a 2025-11-25 upstream's
            # requests are collected on a tasks/result the gateway holds, 0044): a
            # 2026-07-28 client would have nothing to answer, so it sees the task working.
            message = f"{state.message} (nothing of what it waits for to show yet: poll again)"
            state = replace(state, status="working", message=message)
        fields = task_envelope(row, state, modern, wrap=False)
        if state.input_requests is not None and modern:
            fields["inputRequests"] = state.input_requests
        if modern and state.status == "completed" and state.result is not None:
            fields["result"] = state.result
        elif modern and state.status in ("failed", "cancelled"):
            fields["error"] = {
                "code": REFUSED,
                "message": state.message,
                "data": {META_KEY: refusal_meta(row, state, self.states.links(row))},
            }
        return fields

    async def result(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetTaskPayloadRequestParams
    ) -> dict[str, Any]:
        """2025-11-25: the call's result once the task ended, waiting up to the hold."""
        _legacy_only(ctx, "tasks/result")
        row = await self._owned(ctx, params.task_id, "tasks/result")
        deadline = time.monotonic() + self.result_wait_s
        principal = caller_of(http_request(ctx))
        # What an upstream task waits for is asked on this request's stream (0041).
        client_input = None
        if row.kind == "upstream" and self.relay is not None:
            client_input = owner_input(self.relay, ctx, row, principal, self.in_session(ctx))
        state = await self.states.of(row, principal, with_result=True, client_input=client_input)
        while state.status in ("working", "input_required"):
            if time.monotonic() >= deadline:
                raise MCPError(
                    code=-32000,
                    message=f"task {row.id} is still working: {state.message}; poll tasks/get "
                    "and ask for the result once it is completed",
                    data={"taskId": row.id, "status": state.status, "retry_after_s": 2},
                )
            await anyio.sleep(_RESULT_POLL_S)
            state = await self.states.of(
                row, principal, with_result=True, client_input=client_input
            )
        if state.result is not None:  # what ran, or the refusal the call was answered
            result = dict(state.result)
        else:
            result = failed_result(row, state, refusal_meta(row, state, self.states.links(row)))
        result["_meta"] = {**result.get("_meta", {}), RELATED_TASK_META: {"taskId": row.id}}
        return result

    async def update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> dict[str, Any]:
        """2026-07-28 ``tasks/update``: the owner's answers to what its upstream task
        waits for (shown by ``tasks/get``), recorded and passed on (0041)."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            raise MCPError(
                code=types.METHOD_NOT_FOUND, message="Method not found", data="tasks/update"
            )
        row = await self._owned(ctx, params.task_id, "tasks/update")
        if row.kind != "upstream":
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=f"task {row.id} waits for no input",
                data={"taskId": row.id},
            )
        try:
            await self.passthrough.update(row, caller_of(http_request(ctx)), params.input_responses)
        except ClientInputRefused as refused:
            raise MCPError(
                code=refused.rpc_code, message=refused.message, data={"taskId": row.id}
            ) from None
        return {}

    async def list(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        """2025-11-25: the caller's own tasks, oldest first, a page at a time."""
        _legacy_only(ctx, "tasks/list")
        principal = caller_of(http_request(ctx))
        after = _cursor(getattr(params, "cursor", None) if params is not None else None)
        rows = await anyio.to_thread.run_sync(
            lambda: self.store.list(principal.identity, after=after, limit=LIST_PAGE)
        )
        states = await self.states.of_page(rows, principal)
        tasks = [
            task_envelope(row, state, False, wrap=False)
            for row, state in zip(rows, states, strict=True)
        ]
        page: dict[str, Any] = {"tasks": tasks}
        if len(rows) == LIST_PAGE:
            page["nextCursor"] = f"{rows[-1].created_at!r}/{rows[-1].id}"
        return page

    async def cancel(
        self, ctx: ServerRequestContext[Any, Any], params: types.CancelTaskRequestParams
    ) -> dict[str, Any]:
        row = await self._owned(ctx, params.task_id, "tasks/cancel")
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        principal = caller_of(http_request(ctx))
        state = await self.states.of(row, principal)
        if state.status in ("working", "input_required") and row.kind == "upstream":
            await self.passthrough.cancel(row, principal)
            self._audit_cancel(row, principal)
            state = await self.states.of(row, principal)
        elif state.status == "working" and row.run_id is not None:
            try:
                await held_calls.cancel_held(self.executor, row.run_id, principal)
            except RunFinished:
                pass  # it ended meanwhile: the state below says how
            else:
                self._audit_cancel(row, principal)
            state = await self.states.of(row)
        elif not modern:
            # 2025-11-25: cancelling a task that already ended is invalid params.
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=f"task {row.id} is already {state.status}",
                data={"taskId": row.id, "status": state.status},
            )
        if modern:
            return {}  # an acknowledgement; the next tasks/get shows the status
        return task_envelope(row, state, False, wrap=False)

    # --- shared -------------------------------------------------------------------------

    async def _owned(
        self, ctx: ServerRequestContext[Any, Any], task_id: str, method: str
    ) -> TaskRow:
        """The caller's task, or -32602 as if it did not exist (audited)."""
        principal = caller_of(http_request(ctx))
        row = await anyio.to_thread.run_sync(lambda: self.store.find(task_id))
        if row is not None and row.owner == principal.identity.key:
            return row
        reason = "not_found" if row is None else "not_owner"
        await self._audit_refused(principal, task_id, method, reason)
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"no task {task_id!r}",
            data={"taskId": task_id},
        )

    async def _audit_refused(
        self, principal: Principal, task_id: str, method: str, reason: str
    ) -> None:
        payload = {
            "task_id": task_id,
            "method": method,
            "principal": principal.to_audit(),
            "reason": reason,
        }
        try:
            await self.audit.append(AuditRecord("task.refused", task_id, payload, principal.sub))
        except AuditUnavailable as exc:
            log.error("refused %s of %s not recorded: %s", method, task_id, exc.message)

    def _audit_cancel(self, row: TaskRow, principal: Principal) -> None:
        payload = {"task_id": row.id, "run_id": row.run_id, "by": principal.to_audit()}
        try:
            self.audit.submit(
                AuditRecord("task.cancelled", row.id, payload, principal.sub, row.tool)
            )
        except AuditUnavailable as exc:
            log.error("cancel of %s not recorded: %s", row.id, exc.message)


class UpdateTaskParams(types.RequestParams):
    """``tasks/update`` of the 2026-07-28 tasks extension (the SDK has no type for it)."""

    task_id: str = Field(alias="taskId")
    input_responses: dict[str, Any] = Field(alias="inputResponses")


def _legacy_only(ctx: ServerRequestContext[Any, Any], method: str) -> None:
    # The 2026-07-28 extension removed these: the result is inlined on tasks/get.
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data=method)


def _cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    created, _, task_id = cursor.partition("/")
    try:
        return float(created), task_id
    except ValueError:
        raise MCPError(code=types.INVALID_PARAMS, message="invalid cursor") from None
