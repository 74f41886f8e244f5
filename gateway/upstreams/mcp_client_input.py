"""What an upstream asks of the client (elicitation, sampling, roots), relayed to the
calling client: the connection's callbacks for a server-to-client request on the call's
stream (2025-11-25; roots excepted on the shared connection, relayed only on a calling
session's own: `relay_input`), and the driving of a multi-round-trip ``input_required``
result (2026-07-28, `until_complete`), with the check of the client's answers
(`typed_answers`).

The client asked is the one `mcp_requests.run` put on its context variable for the call
(`mcp_requests.ASK`, the operation's `ClientInput`); a callback's request that arrives
outside any caller's context goes to the one request in flight
(`mcp_in_flight.InFlight`), else is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types

from gateway.errors import ClientInputRefused, UpstreamError
from gateway.operations import InputMethod, InputRequest
from gateway.upstreams.mcp_in_flight import InFlight
from gateway.upstreams.mcp_requests import ASK, describe

log = logging.getLogger(__name__)

# Rounds of input an upstream may ask for in one request (the SDK's default too).
MAX_INPUT_ROUNDS = 10

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
    client_input = ASK.get() or in_flight.sole()
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
        client_input = ASK.get()
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
