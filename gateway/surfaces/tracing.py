"""The HTTP request's span, and the trace a call through a surface belongs to.

`TracingMiddleware` is the outermost middleware while tracing is on (`app.py` leaves
it out otherwise): it continues the caller's trace from the W3C ``traceparent`` /
``tracestate`` headers, or begins one, and keeps the request's span context in
``scope["state"]`` — the MCP SDK runs handlers in tasks that do not inherit the
request's context (a session's requests run in the task of its initialize), so a
surface hands the context to the pipeline in the `Operation` instead (`trace_of`).

An MCP request may carry its trace context in ``params._meta`` (SEP-414); that one
names the parent of the call more precisely than the HTTP request's (a client may
send several calls on one connection) and wins.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import telemetry
from gateway.surfaces.auth import Authenticator
from gateway.types import Principal

# Where `TracingMiddleware` keeps the request span's context, in ``scope["state"]``.
TRACE_STATE_KEY = "trace_context"


class TracingMiddleware:
    """A server span around every HTTP request, child of the caller's ``traceparent``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not telemetry.enabled():
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in (b"traceparent", b"tracestate")
        }
        parent = telemetry.incoming(headers)
        with telemetry.span(scope["method"], parent=parent, kind="server") as span:
            assert span is not None  # tracing is on
            from opentelemetry.trace import set_span_in_context

            scope.setdefault("state", {})[TRACE_STATE_KEY] = set_span_in_context(span)
            span.set_attributes({"http.request.method": scope["method"], "url.path": scope["path"]})

            async def send_noting_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        telemetry.fail(span, f"HTTP {status}")
                await send(message)

            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{scope['method']} {route}")
                    span.set_attribute("http.route", route)


class TracedAuthenticator(Authenticator):
    """An `Authenticator` whose every check is a span (naming the principal, or the
    refusal); `components.py` builds it instead while tracing is on."""

    async def authenticate(self, request: Request) -> Principal:
        with telemetry.span("gateway.authenticate") as span:
            principal = await super().authenticate(request)
            if span is not None:
                span.set_attribute("gateway.principal", principal.sub)
        return principal


def trace_of(request: Request, meta: Any = None) -> Any:
    """The trace context a call made through ``request`` continues: the one in the MCP
    ``_meta`` (``meta``: a dict or the SDK's model) if any, else the HTTP request's
    span. Only while tracing is on (callers test `telemetry.ON` first: off, the call
    path makes not even this call)."""
    if meta is not None and not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True)
    return telemetry.incoming(meta) or request.scope.get("state", {}).get(TRACE_STATE_KEY)
