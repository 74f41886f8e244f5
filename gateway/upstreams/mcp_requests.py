"""One request to an MCP upstream through the SDK client, with what rides along.

Per-call headers (a JWT minted for this agent) ride on a context variable read by an
httpx event hook: the SDK sends each request from the caller's context, so concurrent
calls on one connection each carry their own credential. Log messages the upstream
sends during the request go to the caller's `LogSink`, on another context variable
read by the connection's logging callback: the SDK runs that callback in the
caller's context for messages on the request's own stream (Streamable HTTP). Over
stdio, and on the standalone stream, there is no caller: such messages are only
logged here, never sent to someone else's client.

What an upstream asks of the client (elicitation, sampling, roots) finds its caller
the same way, on a third context variable (`ASK`) holding the operation's
`ClientInput`: it is relayed by `mcp_client_input`. The requests in flight on a
connection, for what arrives naming no caller, are `mcp_in_flight`'s.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, LOG_LEVEL_META_KEY, REQUEST_TIMEOUT

from gateway.errors import (
    ClientInputRefused,
    GatewayError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.http_client import HttpTransportError
from gateway.operations import ClientInput, InputRequest, LogSink
from gateway.telemetry import TRACEPARENT, TRACESTATE
from gateway.upstreams.mcp_in_flight import InFlight
from gateway.upstreams.mcp_lean_call import NeedsSdk, is_sessionless

log = logging.getLogger(__name__)

_CALL_HEADERS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "gateway_upstream_call_headers", default=None
)
_LOG_SINK: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar(
    "gateway_upstream_log_sink", default=None
)
# The operation's `ClientInput` of the call being sent (`run`): the client an upstream's
# requests for input are relayed to (`mcp_client_input`).
ASK: contextvars.ContextVar[ClientInput | None] = contextvars.ContextVar(
    "gateway_upstream_input_ask", default=None
)
# The deadline of the call being sent (`run`): its response stream may stay silent that
# long (a held tasks/result waits for a person's answer) without the transport's read
# timing out, which would end the whole connection, every other call on it included.
_CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "gateway_upstream_call_deadline", default=None
)
# A call's transport read timeout is at least its deadline plus this: the deadline,
# which fails that call alone (`UpstreamTimeout`), always comes first.
READ_MARGIN_S = 30.0
_T = TypeVar("_T")


async def apply_call_headers(request: httpx2.Request) -> None:
    """The httpx request hook of every upstream connection: the call's headers, and a
    read timeout that outlasts the call's deadline."""
    for name, value in (_CALL_HEADERS.get() or {}).items():
        request.headers[name] = value
    deadline = _CALL_DEADLINE.get()
    timeout = request.extensions.get("timeout")
    if deadline is not None and isinstance(timeout, dict):
        read = timeout.get("read")
        if read is not None and read < deadline + READ_MARGIN_S:
            request.extensions["timeout"] = {**timeout, "read": deadline + READ_MARGIN_S}


def relay_log(
    upstream: str, outside: Callable[[], LogSink | None] | None = None
) -> Callable[[types.LoggingMessageNotificationParams], Awaitable[None]]:
    """The logging callback of ``upstream``'s connection. ``outside``: where a message
    sent outside any request goes, on a calling session's own upstream session (that
    session's stream); the shared connection has none: such a message is only logged."""

    async def relay(params: types.LoggingMessageNotificationParams) -> None:
        sink = _LOG_SINK.get()
        if sink is None and outside is not None:
            sink = outside()
        if sink is None:
            log.debug("upstream %s logged (%s) outside any request", upstream, params.level)
            return
        if sink.wants(params.level):
            try:
                await sink.send(params.level, params.data, params.logger)
            except Exception:  # the client went away: its request ends on its own
                log.debug("log message of upstream %s not relayed", upstream, exc_info=True)

    return relay


async def run(
    upstream: str,
    what: str,
    send: Callable[[], Awaitable[_T]],
    *,
    headers: dict[str, str],
    log_sink: LogSink | None,
    timeout_s: float,
    mark_broken: Callable[[BaseException], None],
    client_input: ClientInput | None = None,
    in_flight: InFlight | None = None,
) -> _T:
    """Runs ``send`` with this call's headers and log sink, under a deadline; every
    failure is an `UpstreamError` (a JSON-RPC error answer: `UpstreamRejected`), and a
    transport failure marks the connection broken (the supervisor reconnects)."""
    header_token = _CALL_HEADERS.set(headers)
    sink_token = _LOG_SINK.set(log_sink)
    ask_token = ASK.set(client_input)
    deadline_token = _CALL_DEADLINE.set(timeout_s)
    flight = in_flight.enter(client_input, log_sink) if in_flight is not None else None
    try:
        with anyio.fail_after(timeout_s):
            return await send()
    except GatewayError:
        raise  # already says what happened (a refused request for client input)
    except TimeoutError:
        raise UpstreamTimeout(
            f"upstream {upstream} did not answer {what} within {timeout_s:g} s"
        ) from None
    except MCPError as exc:
        if exc.code == types.URL_ELICITATION_REQUIRED:
            await _check_url_elicitations(upstream, what, exc, client_input)
        if exc.code == REQUEST_TIMEOUT:
            raise UpstreamTimeout(f"upstream {upstream} timed out on {what}") from None
        if exc.code == CONNECTION_CLOSED:
            mark_broken(exc)
            raise UpstreamUnavailable(f"upstream {upstream} closed the connection") from None
        raise UpstreamRejected(
            f"upstream {upstream} rejected {what}: {exc.message} (JSON-RPC {exc.code})",
            rpc_code=exc.code,
            rpc_message=exc.message,
            rpc_data=exc.error.data,
        ) from None
    except NeedsSdk:
        raise  # a lean request refused before it ran: the caller sends it through the SDK
    except HttpTransportError as exc:
        # A lean request found the upstream down or restarted: the supervisor reconnects.
        mark_broken(exc)
        raise UpstreamUnavailable(f"upstream {upstream} failed: {exc.message}") from None
    except Exception as exc:
        mark_broken(exc)
        raise UpstreamUnavailable(f"upstream {upstream} failed: {describe(exc)}") from None
    finally:
        if flight is not None and in_flight is not None:
            in_flight.leave(flight)
        _CALL_DEADLINE.reset(deadline_token)
        ASK.reset(ask_token)
        _LOG_SINK.reset(sink_token)
        _CALL_HEADERS.reset(header_token)


async def _check_url_elicitations(
    upstream: str, what: str, exc: MCPError, client_input: ClientInput | None
) -> None:
    """An upstream's URL-elicitation-required error (-32042) sends the user to the URLs
    it names: each is decided like a relayed URL elicitation (the host allowlist), and
    one refused refuses the error (`ClientInputRefused`), so no URL reaches the client
    that policy would not let through."""
    data = exc.error.data if isinstance(exc.error.data, dict) else {}
    elicitations = data.get("elicitations")
    if client_input is None or not isinstance(elicitations, list) or not elicitations:
        raise ClientInputRefused(
            f"upstream {upstream} answered {what} with a URL elicitation the gateway cannot "
            "put to this client"
        )
    for elicitation in elicitations:
        params = elicitation if isinstance(elicitation, dict) else {}
        await client_input.check(
            upstream, InputRequest("elicitation/create", {**params, "mode": "url"})
        )


@contextlib.asynccontextmanager
async def http_transport(url: str, http: httpx2.AsyncClient) -> AsyncIterator[Any]:
    """The SDK's Streamable HTTP transport on ``http``, which is closed with it (the SDK
    leaves a client it was given open: each reconnect left a connection pool behind)."""
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


def with_trace(meta: dict[str, Any] | None, headers: dict[str, str]) -> dict[str, Any]:
    """``meta`` plus the trace context the pipeline put in ``headers`` of a traced call
    (`gateway.telemetry`; callers test for ``traceparent`` first): an MCP request
    carries it in ``params._meta`` too (SEP-414), the only way a stdio upstream
    receives it."""
    trace = {TRACEPARENT: headers[TRACEPARENT]}
    if TRACESTATE in headers:
        trace[TRACESTATE] = headers[TRACESTATE]
    return {**(meta or {}), **trace}


def with_log_level(
    client: Client, meta: dict[str, Any] | None, sink: LogSink | None
) -> dict[str, Any] | None:
    """At 2026-07-28 an upstream logs only for requests that ask, at the level asked:
    ask at the level the calling client wants. (A 2025-11-25 upstream sends what its
    own default level lets through; the sink filters per client.)"""
    if sink is None or not is_sessionless(client.protocol_version):
        return meta
    return {**(meta or {}), LOG_LEVEL_META_KEY: sink.level}


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return describe(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
