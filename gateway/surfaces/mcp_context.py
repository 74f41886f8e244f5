"""What an MCP handler reads of the SDK's request context: the HTTP request it came in
on (the gateway serves MCP over HTTP only), and a request's ``_meta`` as a plain dict."""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from starlette.requests import Request


def http_request(ctx: ServerRequestContext[Any, Any]) -> Request:
    """The HTTP request of ``ctx``; -32603 if the server were mounted on another
    transport (only reachable by a wiring mistake)."""
    request = ctx.request
    if not isinstance(request, Request):
        raise MCPError(code=types.INTERNAL_ERROR, message="the gateway serves MCP over HTTP only")
    return request


def meta_dict(meta: Any) -> dict[str, Any]:
    """A request's ``_meta`` (absent, a dict, or the SDK's model) as a dict."""
    if meta is None:
        return {}
    if isinstance(meta, dict):
        return meta
    dumped: dict[str, Any] = meta.model_dump(by_alias=True)
    return dumped
