"""The aggregated MCP endpoint (architecture.md §7): one `/mcp`, every upstream's tools.

Stateless Streamable HTTP serving both protocol eras on the same endpoint: 2025-11-25
(initialize handshake) and 2026-07-28 (sessionless); the SDK negotiates which. This
module only translates: an authenticated request becomes a `ToolCall`, an `Outcome`
becomes a `CallToolResult`.

Denials are tool results with ``isError: true`` (so the model reads why), carrying the
machine-readable decision under the `META_KEY` of ``_meta``. An unknown tool is a
JSON-RPC invalid-params error, as the MCP specification asks.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from urllib.parse import urlsplit

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError, PolicyUnavailable, UnknownTool
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import client_info, principal_of
from gateway.surfaces.mcp_direct import DirectToolsCall
from gateway.surfaces.middleware import replay_body, request_id_of
from gateway.types import (
    ClientInfo,
    Outcome,
    OutcomeStatus,
    Principal,
    ProgressCallback,
    ToolCall,
    ToolDefinition,
    ToolResult,
)
from gateway.version import __version__

# The one vendor key under `_meta` where the gateway puts its decision (stable: clients
# parse it). Documented in docs/mcp.md.
META_KEY = "io.agentgateway/decision"

log = logging.getLogger(__name__)


class LocalTools(Protocol):
    """Tools the gateway offers itself (the executor's ``workflow__*``): listed beside
    the upstream tools, called with the authenticated principal, never forwarded."""

    async def visible(
        self, principal: Principal, *, request_id: str, client: ClientInfo | None = None
    ) -> list[ToolDefinition]:
        """The local tools this principal may see (policy, ``tools/list``)."""
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


def build_mcp_server(pipeline: Pipeline, local_tools: LocalTools | None = None) -> Server:
    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        request = _request(ctx)
        principal = _principal(request)
        request_id = request_id_of(request)
        try:
            tools = await pipeline.list_tools(
                principal, transport="mcp", request_id=request_id, client=client_info(request)
            )
            if local_tools is not None:
                tools += await local_tools.visible(
                    principal, request_id=request_id, client=client_info(request)
                )
        except PolicyUnavailable as overloaded:
            raise MCPError(
                code=overloaded.jsonrpc_code, message=overloaded.message, data=overloaded.details
            ) from None
        return types.ListToolsResult(tools=[_to_mcp_tool(t) for t in tools])

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(done, total, message)

        # Relay progress only when the client asked for it: a progress token makes the
        # upstream answer as an event stream, which costs a round of latency.
        wants_progress = _progress_token(params) is not None
        return await answer_tools_call(
            pipeline,
            local_tools,
            _request(ctx),
            params,
            progress=progress if wants_progress else None,
        )

    return Server(
        "agent-tool-gateway",
        version=__version__,
        instructions="Tools of every upstream behind this gateway, named <upstream>__<tool>. "
        "Calls are checked by policy and audited; a refused call returns isError with the reason.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # The SDK would otherwise run tools/list before each 2026-era call to find the
        # schema; the pipeline validates arguments itself, and audits the refusal.
        get_tool_input_schema=lambda name: None,
    )


async def answer_tools_call(
    pipeline: Pipeline,
    local_tools: LocalTools | None,
    request: Request,
    params: types.CallToolRequestParams,
    *,
    progress: ProgressCallback | None,
) -> types.CallToolResult:
    """The one translation of an MCP ``tools/call`` into the pipeline and back, shared by
    the SDK's transport and the direct path (`mcp_direct`). Raises `MCPError` for what
    is a JSON-RPC error rather than a tool result (an unknown tool, a gateway bug)."""
    principal = _principal(request)
    request_id = request_id_of(request)
    if local_tools is not None and local_tools.handles(params.name):
        local = await local_tools.call(
            params.name,
            dict(params.arguments or {}),
            principal=principal,
            request_id=request_id,
            client=client_info(request),
        )
        return types.CallToolResult.model_validate(
            {
                "content": local.content,
                "structuredContent": local.structured_content,
                "isError": local.is_error,
            }
        )
    call = ToolCall(
        principal=principal,
        tool=params.name,
        arguments=dict(params.arguments or {}),
        transport="mcp",
        request_id=request_id,
        client=client_info(request),
        progress=progress,
    )
    try:
        outcome = await pipeline.call(call)
    except Exception:
        # The SDK would send str(exc) to the client on the 2025 path; say nothing
        # internal, log it, and point at the request id.
        log.exception("tools/call %s failed unexpectedly", call.request_id)
        raise MCPError(
            code=types.INTERNAL_ERROR,
            message=f"internal gateway error (request {call.request_id})",
        ) from None
    if isinstance(outcome.error, UnknownTool | PolicyUnavailable):
        # Not a tool result: an unknown tool is invalid params; an overloaded gateway
        # decided nothing, and the client should retry, not read a denial.
        raise MCPError(
            code=outcome.error.jsonrpc_code,
            message=outcome.error.message,
            data={"tool": params.name, "request_id": outcome.request_id, **outcome.error.details},
        )
    return to_call_tool_result(outcome)


def to_call_tool_result(outcome: Outcome) -> types.CallToolResult:
    meta = {META_KEY: outcome_meta(outcome)}
    if outcome.status is OutcomeStatus.OK and outcome.result is not None:
        return types.CallToolResult.model_validate(
            {
                "content": outcome.result.content,
                "structuredContent": outcome.result.structured_content,
                "isError": outcome.result.is_error,
                "_meta": meta,
            }
        )
    error = outcome.error
    message = error.message if isinstance(error, GatewayError) else "the call failed"
    if outcome.status is OutcomeStatus.PENDING_APPROVAL:
        # Already says "pending_approval: …", the approval id and how to retry.
        text = message
    else:
        verb = "was not executed" if outcome.status is OutcomeStatus.DENIED else "failed"
        text = f"The call to {outcome.tool} {verb}: {message}"
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True, _meta=meta)


def outcome_meta(outcome: Outcome) -> dict[str, Any]:
    """The machine-readable part of an outcome, shared by MCP `_meta` and REST bodies."""
    meta: dict[str, Any] = {"request_id": outcome.request_id, "status": outcome.status.value}
    if isinstance(outcome.error, GatewayError):
        meta["error"] = outcome.error.to_dict()
    if outcome.decision is not None:
        meta["decision"] = outcome.decision.to_dict()
    if outcome.approval_id is not None:
        meta["approval_id"] = outcome.approval_id
    if outcome.replay_of is not None:
        # The recorded outcome of an approved call that ran for that request; this
        # request did not run it again.
        meta["replay_of"] = outcome.replay_of
    return meta


def _progress_token(params: types.CallToolRequestParams) -> Any:
    meta: Any = params.meta or {}
    if not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True)
    return meta.get("progressToken", meta.get("progress_token"))


def _to_mcp_tool(tool: ToolDefinition) -> types.Tool:
    return types.Tool.model_validate(
        {
            "name": tool.name,
            "title": tool.title,
            "description": tool.description,
            "inputSchema": tool.input_schema,
            "outputSchema": tool.output_schema,
            "annotations": tool.annotations or None,
        }
    )


def _request(ctx: ServerRequestContext[Any, Any]) -> Request:
    request = ctx.request
    if not isinstance(request, Request):  # only reachable if mounted on a non-HTTP transport
        raise MCPError(code=types.INTERNAL_ERROR, message="the gateway serves MCP over HTTP only")
    return request


def _principal(request: Request) -> Principal:
    try:
        return principal_of(request)
    except GatewayError:  # the middleware guarantees one; fail closed all the same
        raise MCPError(code=types.INVALID_REQUEST, message="not authenticated") from None


class McpEndpoint:
    """The ASGI app at `/mcp` (behind `AuthenticationMiddleware`, like every route): the
    SDK's stateless transport, or the direct path for a sessionless ``tools/call``."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        public_url: str,
        max_body_bytes: int,
        local_tools: LocalTools | None = None,
    ) -> None:
        self.server = build_mcp_server(pipeline, local_tools)
        self.session_manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            json_response=False,  # SSE, so progress notifications can reach the client
            security_settings=_transport_security(public_url),
            max_request_body_size=max_body_bytes,
        )
        self._transport: ASGIApp = StreamableHTTPASGIApp(self.session_manager)

        async def answer(
            request: Request, params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            return await answer_tools_call(pipeline, local_tools, request, params, progress=None)

        self._direct = DirectToolsCall(
            self.server,
            TransportSecurityMiddleware(_transport_security(public_url)),
            answer=answer,
            declines=local_tools.handles if local_tools is not None else lambda name: False,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "DELETE"):
            # Stateless: no standalone SSE stream to GET and no session to DELETE.
            response: Response = JSONResponse(
                {"error": {"code": "method_not_allowed", "message": "use POST"}},
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        request = Request(scope, receive)
        principal_of(request)  # authenticated by AuthenticationMiddleware; fails closed
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            await JSONResponse(
                {
                    "error": {
                        "code": "unsupported_media_type",
                        "message": "Content-Type must be application/json for MCP messages",
                    }
                },
                status_code=415,
            )(scope, receive, send)
            return
        if self._direct.may_take(request):
            body = await request.body()
            if await self._direct.answer(request, body, send):
                return
            receive = replay_body(body, receive)
        await self._transport(scope, receive, send)


def _transport_security(public_url: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the gateway's own host names are accepted."""
    parts = urlsplit(public_url)
    host = parts.netloc
    origin = f"{parts.scheme}://{parts.netloc}"
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[host, "127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=[origin, "http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
