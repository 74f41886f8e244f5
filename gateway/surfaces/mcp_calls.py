"""A call through the MCP surface: the one translation of ``tools/call`` (shared by
the SDK's transport and the direct path) and of any `Operation` into the pipeline,
and the gateway's own tools that `/mcp` lists beside the upstreams'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import mcp_types as types
from mcp.shared.exceptions import MCPError
from starlette.requests import Request

from gateway import telemetry
from gateway.errors import GatewayError, RetryLater, UnknownTarget, UpstreamRejected
from gateway.operations import CallerSession, LogSink, Operation, ProgressCallback
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import client_info, principal_of
from gateway.surfaces.mcp_results import to_call_tool_result, tool_result_wire
from gateway.surfaces.mcp_views import View
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.tracing import trace_of
from gateway.types import ClientInfo, Outcome, Principal, ToolDefinition, ToolResult

log = logging.getLogger(__name__)


class LocalTools(Protocol):
    """Tools the gateway offers itself (the executor's ``workflow__*``): listed beside
    the upstream tools on `/mcp`, called with the authenticated principal, never
    forwarded."""

    @property
    def definitions(self) -> Sequence[ToolDefinition]:
        """Every local tool; policy decides which are listed (``tools/list``), in the
        same decision as the catalog's tools."""
        ...

    def handles(self, name: str) -> bool: ...

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        principal: Principal,
        request_id: str,
        client: ClientInfo | None = None,
    ) -> ToolResult: ...


async def answer_tools_call(
    pipeline: Pipeline,
    local_tools: LocalTools | None,
    request: Request,
    params: types.CallToolRequestParams,
    *,
    progress: ProgressCallback | None,
    log: LogSink | None = None,
    prepare: Callable[[Operation], Operation] | None = None,
    session: CallerSession | None = None,
) -> dict[str, Any]:
    """The one translation of an MCP ``tools/call`` into the pipeline and back, shared by
    the SDK's transport and the direct path (`mcp_direct`). Raises `MCPError` for what
    is a JSON-RPC error rather than a tool result (an unknown tool, a gateway bug).
    ``session``: whom a 2025-11-25 upstream sees the call from (`Operation.session`)."""
    principal = caller_of(request)
    request_id = request_id_of(request)
    view = View.of(request)
    if local_tools is not None and view.aggregated and local_tools.handles(params.name):
        local = await local_tools.call(
            params.name,
            dict(params.arguments or {}),
            principal=principal,
            request_id=request_id,
            client=client_info(request),
        )
        return tool_result_wire(local, View())  # the gateway's own: nothing to rename
    operation = tools_call_operation(request, params, progress=progress, log=log, session=session)
    if prepare is not None:  # how the upstream's requests for client input reach it
        operation = prepare(operation)
    outcome = await run(pipeline, operation)
    raise_unless_result(outcome, params.name)
    return to_call_tool_result(outcome, view)


def tools_call_operation(
    request: Request,
    params: types.CallToolRequestParams,
    *,
    progress: ProgressCallback | None,
    log: LogSink | None = None,
    hold_s: float | None = None,
    session: CallerSession | None = None,
) -> Operation:
    """The `Operation` of an MCP ``tools/call`` (``hold_s``: the caller's own limit on
    an approval hold; 0 for a call answered as a task, `mcp_tasks`)."""
    return Operation(
        principal=caller_of(request),
        method="tools/call",
        target=View.of(request).name_in(params.name),
        arguments=dict(params.arguments or {}),
        transport="mcp",
        request_id=request_id_of(request),
        client=client_info(request),
        progress=progress,
        log=log,
        hold_s=hold_s,
        session=session,
        trace=trace_of(request, params.meta) if telemetry.ON else None,
    )


def raise_unless_result(outcome: Outcome, name: str) -> None:
    """An outcome that is not a tool result, as the JSON-RPC error it is instead."""
    if isinstance(outcome.error, UpstreamRejected):
        # The upstream answered with a JSON-RPC error (a missing client capability,
        # -32021, say): the client gets that error, as if it had called the upstream
        # directly; the call's outcome is audited as an error.
        rejected = outcome.error
        raise MCPError(code=rejected.rpc_code, message=rejected.rpc_message, data=rejected.rpc_data)
    if isinstance(outcome.error, UnknownTarget | RetryLater):
        # Not a tool result: an unknown tool is invalid params; an overloaded gateway
        # decided nothing and a limited call was not run: the client should retry
        # (data.retry_after_s), not read a denial.
        raise MCPError(
            code=outcome.error.jsonrpc_code,
            message=outcome.error.message,
            data={"tool": name, "request_id": outcome.request_id, **outcome.error.details},
        )


async def run(pipeline: Pipeline, operation: Operation) -> Outcome:
    try:
        return await pipeline.call(operation)
    except Exception:
        # The SDK would send str(exc) to the client on the 2025 path; say nothing
        # internal, log it, and point at the request id.
        log.exception("%s %s failed unexpectedly", operation.method, operation.request_id)
        raise MCPError(
            code=types.INTERNAL_ERROR,
            message=f"internal gateway error (request {operation.request_id})",
        ) from None


def caller_of(request: Request) -> Principal:
    try:
        return principal_of(request)
    except GatewayError:  # the middleware guarantees one; fail closed all the same
        raise MCPError(code=types.INVALID_REQUEST, message="not authenticated") from None
