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
the same way, on a third context variable holding the operation's `ClientInput`: as a
server-to-client request on the call's stream (2025-11-25; roots excepted on the
shared connection, relayed only on a calling session's own: `relay_input`), or as a
multi-round-trip ``input_required`` result (2026-07-28, `until_complete`).
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
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.http_client import HttpTransportError
from gateway.operations import ClientInput, InputMethod, InputRequest, LogSink
from gateway.telemetry import TRACEPARENT, TRACESTATE
from gateway.upstreams.mcp_lean_call import NeedsSdk, is_sessionless

log = logging.getLogger(__name__)

_CALL_HEADERS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "gateway_upstream_call_headers", default=None
)
_LOG_SINK: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar(
    "gateway_upstream_log_sink", default=None
)
_ASK: contextvars.ContextVar[ClientInput | None] = contextvars.ContextVar(
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
# Rounds of input an upstream may ask for in one request (the SDK's default too).
MAX_INPUT_ROUNDS = 10
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
    ask_token = _ASK.set(client_input)
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
        _ASK.reset(ask_token)
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


# --- what an upstream asks of the client -------------------------------------------
# Declared on every upstream connection (some servers offer their asking tools only to
# clients that can be asked). A request arriving on the call's own stream runs in the
# caller's context, where `run` put the operation's `ClientInput`: it is relayed to the
# calling client under policy (`gateway.relays`). Without a caller (the standalone
# stream, stdio) or without a way to ask it, it is refused: the upstream gets a
# JSON-RPC error and decides what its request becomes, never a hang.

_RESULT_TYPES: dict[InputMethod, type[types.Result]] = {
    "elicitation/create": types.ElicitResult,
    "sampling/createMessage": types.CreateMessageResult,
    "roots/list": types.ListRootsResult,
}
NO_CALLER = (
    "the agent gateway relays {what} only to the client whose request the upstream is "
    "answering; this one arrived outside any request, or over stdio with several in flight"
)


class InFlight:
    """The requests in flight on one upstream connection, with their `ClientInput`s
    and log sinks.

    Over stdio (and on the standalone stream) a request or log message of the upstream
    carries no caller: the SDK runs the callback outside any caller's context. It is
    attributed to the one request in flight when there is exactly one, and refused
    (a log message: not relayed) otherwise: never guessed between two callers."""

    def __init__(self) -> None:
        self._flights: dict[int, tuple[ClientInput | None, LogSink | None]] = {}
        self._next = 0
        # An upstream session held for one caller only (`mcp_caller_sessions`): how the
        # upstream's requests are answered while none of that caller's is in flight.
        # A calling session's: its standalone stream, set once the client said its
        # roots changed (the upstream then asks for them again). A principal's: a
        # refusal under the relay's rule (decided by the gateway, audited).
        self.standalone: ClientInput | None = None
        # Told when the last request in flight has left (an idle upstream session
        # held for a principal is closed after a while: `mcp_caller_sessions`).
        self.on_idle: Callable[[], None] | None = None

    def enter(self, client_input: ClientInput | None, log_sink: LogSink | None = None) -> int:
        self._next += 1
        self._flights[self._next] = (client_input, log_sink)
        return self._next

    def leave(self, token: int) -> None:
        if self._flights.pop(token, None) is not None and not self._flights and self.on_idle:
            self.on_idle()

    @property
    def busy(self) -> bool:
        """Whether any request is in flight."""
        return bool(self._flights)

    def sole(self) -> ClientInput | None:
        if not self._flights:
            return self.standalone
        if len(self._flights) != 1:
            return None
        return next(iter(self._flights.values()))[0]

    def sole_log(self) -> LogSink | None:
        """The log sink of the one request in flight (its level, its stream), if there
        is exactly one; None otherwise."""
        if len(self._flights) != 1:
            return None
        return next(iter(self._flights.values()))[1]


SHARED_ROOTS = (
    "the agent gateway does not answer roots/list on its shared connection to an "
    "upstream of the 2025-11-25 era: an upstream that keeps roots per session would "
    "serve one client's roots to another's calls (docs/mcp.md, Requests for client "
    "input); a client with a session at the gateway is given an upstream session of its "
    "own, where its roots are relayed; at 2026-07-28 roots are asked per request"
)


def relay_input(upstream: str, in_flight: InFlight, *, shared: bool = True) -> tuple[Any, Any, Any]:
    """The elicitation, sampling and roots callbacks of one connection to ``upstream``.

    These callbacks serve only requests sent by the upstream on the connection (the
    2025-11-25 era; at 2026-07-28 requests for input come in ``input_required``
    results, `until_complete`, and are relayed). Elicitation and sampling are answers
    to one request, not state of the session, and are relayed. Roots are refused on
    the ``shared`` connection, always: it is one upstream session for every caller,
    and a server of that era may keep a session's roots (server-everything asks once
    per session and keeps the answer), so relaying one caller's roots there would make
    them what the upstream believes of every later caller's. On a calling session's
    own upstream session (`mcp_caller_sessions`) they are that client's, and relayed.
    """

    async def elicit(context: Any, params: Any) -> Any:
        return await _relay_one(upstream, in_flight, "elicitation/create", _dump(params))

    async def sample(context: Any, params: Any) -> Any:
        return await _relay_one(upstream, in_flight, "sampling/createMessage", _dump(params))

    async def roots(context: Any) -> Any:
        if not shared:
            return await _relay_one(upstream, in_flight, "roots/list", {})
        log.info("upstream %s asked roots/list on its shared connection: refused", upstream)
        return types.ErrorData(code=types.INVALID_REQUEST, message=SHARED_ROOTS)

    return elicit, sample, roots


async def _relay_one(
    upstream: str, in_flight: InFlight, method: InputMethod, params: dict[str, Any]
) -> Any:
    client_input = _ASK.get() or in_flight.sole()
    if client_input is None:
        log.info("upstream %s asked %s outside any request: refused", upstream, method)
        return types.ErrorData(code=types.INVALID_REQUEST, message=NO_CALLER.format(what=method))
    try:
        answers = await client_input.ask(upstream, {"0": InputRequest(method, params)})
        answer = _RESULT_TYPES[method].model_validate(answers["0"], by_name=False)
    except ClientInputRefused as refused:
        return types.ErrorData(code=refused.rpc_code, message=refused.message)
    except Exception as exc:  # a malformed answer, a gone client: the upstream is told
        log.info("%s of upstream %s not relayed: %s", method, upstream, describe(exc))
        return types.ErrorData(
            code=types.INTERNAL_ERROR, message=f"the client could not be asked ({method})"
        )
    if method == "sampling/createMessage" and isinstance(answers["0"].get("content"), list):
        return types.CreateMessageResultWithTools.model_validate(answers["0"], by_name=False)
    return answer


async def until_complete(
    upstream: str,
    what: str,
    result: Any,
    retry: Callable[[dict[str, Any] | None, str | None], Awaitable[Any]],
) -> Any:
    """Drives an upstream's multi-round-trip answer (2026-07-28 ``input_required``) to
    its final result: each round's requests are asked of the calling client (the
    operation's `ClientInput`, under policy) and the request is sent again with the
    answers and the upstream's own ``requestState``. The state never leaves the
    gateway. Refused (`ClientInputRefused`) when there is no client to ask."""
    for _ in range(MAX_INPUT_ROUNDS):
        if not isinstance(result, types.InputRequiredResult):
            return result
        client_input = _ASK.get()
        answers: dict[str, Any] | None = None
        if result.input_requests:
            if client_input is None:
                raise input_required(upstream, what)
            requests = {
                key: InputRequest(request.method, _dump(request.params))
                for key, request in result.input_requests.items()
            }
            answers = typed_answers(requests, await client_input.ask(upstream, requests))
        result = await retry(answers, result.request_state)
    raise UpstreamError(
        f"upstream {upstream} still asked for input after {MAX_INPUT_ROUNDS} rounds of {what}"
    )


def typed_answers(
    requests: dict[str, InputRequest], answers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The client's answers as the SDK sends them, each checked against what was asked
    (keys the upstream did not ask are dropped)."""
    typed: dict[str, Any] = {}
    for key, request in requests.items():
        if key not in answers:
            continue  # the upstream asks again for what is missing
        answer = answers[key]
        if not isinstance(answer, dict):  # a client's JSON: anything may come
            raise ClientInputRefused(
                f"the client's answer to {request.method} ({key!r}) is not an object",
                rpc_code=types.INVALID_PARAMS,
            )
        kind: type[types.Result] = _RESULT_TYPES[request.method]
        if request.method == "sampling/createMessage" and isinstance(answer.get("content"), list):
            kind = types.CreateMessageResultWithTools
        try:
            typed[key] = kind.model_validate(answer, by_name=False)
        except ValueError:
            raise ClientInputRefused(
                f"the client's answer to {request.method} ({key!r}) is not a valid result",
                rpc_code=types.INVALID_PARAMS,
            ) from None
    return typed


def input_required(upstream: str, what: str) -> ClientInputRefused:
    return ClientInputRefused(
        f"upstream {upstream} asked the client for input to answer {what}, and there is no "
        "client to ask here (a request without a way back to its client)"
    )


def _dump(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    dumped: dict[str, Any] = params.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return describe(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
