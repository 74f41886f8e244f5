"""The MCP endpoints (architecture.md §7): `/mcp`, every upstream under the gateway's
names, and `/mcp/{upstream}`, one upstream under its own (`mcp_views`).

Streamable HTTP, both protocol eras on each endpoint, and for each request the
cheapest way that serves it:

- a sessionless 2026-07-28 ``tools/call`` (no progress, no logs): the direct path
  (`mcp_direct`, docs/decisions/0010); a sessionless 2026-07-28 list likewise, its
  result written once per what is listed (docs/decisions/0038);
- any other 2026-07-28 request, and 2025-11-25 requests without a session: the SDK's
  stateless transport;
- a 2025-11-25 ``initialize`` (sessions on), and every request carrying the session
  id it returned (GET and DELETE included): the SDK's stateful transport, the
  session bound to its owner (`mcp_sessions`).

This module only routes; the methods are `mcp_server`'s handlers, the answers
`mcp_results`'.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.config import McpSessionsConfig
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import principal_of
from gateway.surfaces.mcp_calls import LocalTools, answer_tools_call
from gateway.surfaces.mcp_direct import DirectLists, DirectToolsCall
from gateway.surfaces.mcp_principals import PrincipalCallers
from gateway.surfaces.mcp_relay import InputRelay, direct_asking
from gateway.surfaces.mcp_results import META_KEY, outcome_meta, to_call_tool_result
from gateway.surfaces.mcp_server import build_mcp_server, tool_input_schema
from gateway.surfaces.mcp_sessions import SessionBook, Sessions
from gateway.surfaces.mcp_subscriptions import Subscriptions
from gateway.surfaces.mcp_tasks import McpTasks
from gateway.surfaces.mcp_views import UPSTREAM_PARAM, View
from gateway.surfaces.middleware import replay_body

__all__ = ["META_KEY", "McpEndpoint", "outcome_meta", "to_call_tool_result"]


class McpEndpoint:
    """The ASGI app at `/mcp` and `/mcp/{upstream}` (behind `AuthenticationMiddleware`,
    like every route)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        public_url: str,
        max_body_bytes: int,
        sessions: McpSessionsConfig,
        relay: InputRelay,
        local_tools: LocalTools | None = None,
        tasks: McpTasks | None = None,
    ) -> None:
        security = _transport_security(public_url)
        self.book = SessionBook(sessions.idle_timeout_s)
        # Whom a 2025-11-25 upstream sees a sessionless 2026-07-28 request from (0043).
        principals = PrincipalCallers(relay.relays)
        self.subscriptions = Subscriptions(pipeline, self.book, principals)
        self.server = build_mcp_server(
            pipeline,
            local_tools,
            self.book,
            relay,
            self.subscriptions,
            sessions=sessions.enabled,
            principals=principals,
            tasks=tasks,
        )
        self.sessions = Sessions(
            self.server, sessions, self.book, security=security, max_body_bytes=max_body_bytes
        )
        self._upstreams = frozenset(pipeline.catalog.upstreams())
        # A catalog refresh that changed an upstream's lists tells the sessions.
        pipeline.catalog.on_change(self.book.lists_changed)
        catalog = pipeline.catalog

        async def close_upstream_sessions(session_id: str) -> None:
            catalog.end_session(session_id)  # its upstream sessions of its own (0034)

        self.book.on_end(close_upstream_sessions)

        async def answer(
            request: Request, params: types.CallToolRequestParams
        ) -> dict[str, Any] | types.InputRequiredResult:
            asking = direct_asking(request, params)
            session = principals.caller(
                asking.principal,
                asking.endpoint,
                asking.capabilities,
                method="tools/call",
                target=asking.target,
                request_id=asking.request_id,
            )
            return await relay.run(
                asking,
                lambda prepare: answer_tools_call(
                    pipeline,
                    local_tools,
                    request,
                    params,
                    progress=None,
                    prepare=prepare,
                    session=session,
                ),
            )

        checks = TransportSecurityMiddleware(security)
        self._lists = DirectLists(self.server, checks, answer=self.server.listing)
        self._direct = DirectToolsCall(
            self.server,
            checks,
            answer=answer,
            declines=local_tools.handles if local_tools is not None else lambda name: False,
            input_schema=lambda request, name: tool_input_schema(
                pipeline, View.of(request).name_in(name)
            ),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        upstream = request.path_params.get(UPSTREAM_PARAM)
        if upstream is not None and upstream not in self._upstreams:
            await _error(404, "unknown_upstream", f"no upstream {upstream!r} behind this gateway")(
                scope, receive, send
            )
            return
        principal = principal_of(request)  # authenticated by the middleware; fails closed
        session_id = request.headers.get(MCP_SESSION_ID_HEADER)
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        # A 2026-07-28 request is sessionless whatever it carries; a 2025-11-25 one is
        # of a session when it names one.
        sessions = self.sessions.enabled and version not in MODERN_PROTOCOL_VERSIONS
        stateful = sessions and session_id is not None
        if scope["method"] in ("GET", "DELETE"):
            if stateful:
                await self.sessions.serve_stateful(
                    scope, receive, send, principal=principal, upstream=upstream
                )
                return
            # No session: no standalone stream to GET and nothing to DELETE.
            response: Response = JSONResponse(
                {"error": {"code": "method_not_allowed", "message": "use POST"}},
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            message = "Content-Type must be application/json for MCP messages"
            await _error(415, "unsupported_media_type", message)(scope, receive, send)
            return
        direct = self._direct if self._direct.may_take(request) else None
        if direct is None and self._lists.may_take(request):
            direct = self._lists
        if direct is not None:
            body = await request.body()
            if await direct.answer(request, body, send):
                return
            receive = replay_body(body, receive)
        elif sessions and session_id is None:
            # Only an initialize opens a session; anything else goes on sessionless.
            body = await request.body()
            receive = replay_body(body, receive)
            stateful = _is_initialize(body)
        if stateful:
            await self.sessions.serve_stateful(
                scope, receive, send, principal=principal, upstream=upstream
            )
        else:
            await self.sessions.serve_stateless(scope, receive, send)


def _is_initialize(body: bytes) -> bool:
    if b'"initialize"' not in body:
        return False  # the common case, without parsing
    try:
        decoded: Any = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(decoded, dict) and decoded.get("method") == "initialize"


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


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
