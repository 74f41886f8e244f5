"""One request to an MCP upstream through the SDK client, with what rides along.

Per-call headers (a JWT minted for this agent) ride on a context variable read by an
httpx event hook: the SDK sends each request from the caller's context, so concurrent
calls on one connection each carry their own credential. Log messages the upstream
sends during the request go to the caller's `LogSink`, on another context variable
read by the connection's logging callback: the SDK runs that callback in the
caller's context for messages on the request's own stream (Streamable HTTP). Over
stdio, and on the standalone stream, there is no caller: such messages are only
logged here, never sent to someone else's client.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, LOG_LEVEL_META_KEY, REQUEST_TIMEOUT

from gateway.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from gateway.types import LogSink
from gateway.upstreams.mcp_lean_call import is_sessionless

log = logging.getLogger(__name__)

_CALL_HEADERS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "gateway_upstream_call_headers", default=None
)
_LOG_SINK: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar(
    "gateway_upstream_log_sink", default=None
)
_T = TypeVar("_T")


async def apply_call_headers(request: httpx2.Request) -> None:
    """The httpx request hook of every upstream connection."""
    for name, value in (_CALL_HEADERS.get() or {}).items():
        request.headers[name] = value


def relay_log(upstream: str) -> Callable[[types.LoggingMessageNotificationParams], Awaitable[None]]:
    """The logging callback of ``upstream``'s connection."""

    async def relay(params: types.LoggingMessageNotificationParams) -> None:
        sink = _LOG_SINK.get()
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
) -> _T:
    """Runs ``send`` with this call's headers and log sink, under a deadline; every
    failure is an `UpstreamError` (a JSON-RPC error answer: `UpstreamRejected`), and a
    transport failure marks the connection broken (the supervisor reconnects)."""
    header_token = _CALL_HEADERS.set(headers)
    sink_token = _LOG_SINK.set(log_sink)
    try:
        with anyio.fail_after(timeout_s):
            return await send()
    except TimeoutError:
        raise UpstreamTimeout(
            f"upstream {upstream} did not answer {what} within {timeout_s:g} s"
        ) from None
    except MCPError as exc:
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
    except Exception as exc:
        mark_broken(exc)
        raise UpstreamUnavailable(f"upstream {upstream} failed: {describe(exc)}") from None
    finally:
        _LOG_SINK.reset(sink_token)
        _CALL_HEADERS.reset(header_token)


def with_log_level(
    client: Client, meta: dict[str, Any] | None, sink: LogSink | None
) -> dict[str, Any] | None:
    """At 2026-07-28 an upstream logs only for requests that ask, at the level asked:
    ask at the level the calling client wants. (A 2025-11-25 upstream sends what its
    own default level lets through; the sink filters per client.)"""
    if sink is None or not is_sessionless(client.protocol_version):
        return meta
    return {**(meta or {}), LOG_LEVEL_META_KEY: sink.level}


def input_required(upstream: str, what: str) -> UpstreamError:
    """The refusal of an upstream's request for client input (multi-round-trip): the
    relay of elicitation, sampling and roots is not built yet (docs/mcp.md), and a
    clear refusal is better than a hang."""
    return UpstreamError(
        f"upstream {upstream} asked the client for input (elicitation, sampling or roots) "
        f"to answer {what}; the gateway does not relay such requests yet"
    )


# --- what an upstream asks of the client -------------------------------------------
# Declared on every upstream connection (some servers offer their asking tools only to
# clients that can be asked) and refused, clearly, until they are relayed to the
# calling client: the seam of the elicitation, sampling and roots relays (docs/mcp.md).
# A refusal reaches the upstream as a JSON-RPC error (2025-11-25) or an error in place
# of the input response (2026-07-28): the upstream decides what its request becomes.

NOT_RELAYED = "the agent gateway does not relay {what} requests to its clients yet"


async def refuse_elicitation(context: Any, params: Any) -> types.ErrorData:
    return types.ErrorData(
        code=types.INVALID_REQUEST, message=NOT_RELAYED.format(what="elicitation")
    )


async def refuse_sampling(context: Any, params: Any) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message=NOT_RELAYED.format(what="sampling"))


async def refuse_roots(context: Any) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message=NOT_RELAYED.format(what="roots"))


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return describe(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
