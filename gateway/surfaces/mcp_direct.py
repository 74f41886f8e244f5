"""A sessionless ``tools/call`` or list on `/mcp`, answered without the SDK's transport.

Why: at the 2026-07-28 revision a ``tools/call`` is one self-contained POST, yet the
SDK's generic transport runs it in a task group with an event-stream sink and a
disconnect watcher, re-checks what the gateway already checked, and rebuilds its
models on the way out — about as much time as the policy decision (docs/decisions/
0010). This path takes only such a request and answers it exactly as the SDK would:

- the envelope and headers go through the SDK's own classifier, the params through
  the SDK's per-revision validator, and the result through its per-revision
  serializer and ``serverInfo`` stamp; errors map to the same codes and statuses;
- the call itself is `gateway.surfaces.mcp.answer_tools_call`, the one translation
  both paths share, handed in as ``answer``.

The lists (``tools/list``, ``prompts/list``, ``resources/list``,
``resources/templates/list``) likewise (docs/decisions/0038): the SDK's transport
spent ≈ 50 ms of CPU writing a list of 1,000 tools — its serializer's validation and
dump, its envelope's dump walking every value of an untyped result, ``json.dumps`` —
on every list, although the result only changes with what is listed. Here a list's
result is written once through the same serializer and ``serverInfo`` stamp (and the
cache hint the runner adds), and kept as JSON under its `Listing.key` (the method,
view, revision and the definition objects listed): a repeated list is one lookup
and one write. What is listed is decided on every request (`Handlers.listing`, the
one translation both paths answer with); only the writing is kept.

Everything else on `/mcp` goes to the SDK unchanged, with the body already read
handed back to it: initialize, notifications, handshake-era requests, requests that
ask for progress or log messages (they need an event stream), and the gateway's own
``workflow__*`` tools.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types import LOG_LEVEL_META_KEY, SERVER_INFO_META_KEY
from mcp_types import methods as spec_methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Send

from gateway.surfaces.mcp_lists import LIST_METHODS, ListAnswer, Listing
from gateway.surfaces.mcp_results import as_retry
from gateway.surfaces.mcp_tasks import declares_tasks

log = logging.getLogger(__name__)

_JSON_HEADERS = [(b"content-type", b"application/json")]

# List results kept as written: 1,000 tools are ≈ 0.5 MB.
KEPT_LISTS = 32

Answer = Callable[
    [Request, types.CallToolRequestParams],
    Awaitable[dict[str, Any] | types.InputRequiredResult],
]


class DirectToolsCall:
    """Answers the sessionless ``tools/call`` requests it can take; declines the rest."""

    def __init__(
        self,
        server: Server[Any],
        security: TransportSecurityMiddleware,
        *,
        answer: Answer,
        declines: Callable[[str], bool],
        input_schema: Callable[[Request, str], Mapping[str, Any] | None],
    ) -> None:
        self._server = server
        self._security = security
        self._answer = answer
        # Tool names left to the SDK's transport (the gateway's own workflow tools).
        self._declines = declines
        # The called tool's input schema (None: unknown), for its Mcp-Param-* headers.
        self._input_schema = input_schema

    @staticmethod
    def may_take(request: Request) -> bool:
        """A cheap first look, before the body is read: a sessionless ``tools/call``."""
        headers = request.headers
        return (
            headers.get(MCP_METHOD_HEADER) == "tools/call"
            and headers.get(MCP_PROTOCOL_VERSION_HEADER) in MODERN_PROTOCOL_VERSIONS
        )

    async def answer(self, request: Request, body: bytes, send: Send) -> bool:
        """Answers the request and returns True, or returns False (nothing sent) when
        it is for the SDK's transport after all."""
        accepted = await _accepted(self._security, request, body, "tools/call")
        if accepted is None:
            return False
        decoded, params = accepted
        if declares_tasks(params.get("_meta")):
            return False  # a call that may become a task (`mcp_tasks`)
        name = params.get("name")
        if isinstance(name, str) and self._declines(name):
            return False
        request_id = decoded["id"]
        version = await _version(request, decoded, send)
        if version is None:
            return True
        rejected = self._param_headers_rejected(request, params)
        if rejected is not None:
            error = types.ErrorData(
                code=rejected.code, message=rejected.message, data=rejected.data
            )
            await _send_error(send, request_id, error)
            return True
        try:
            spec_methods.validate_client_request("tools/call", version, params)
            typed = types.CallToolRequestParams.model_validate(params, by_name=False)
            result = await self._answer(request, typed)
            wire = self._serialize(version, result)
        except Exception as exc:
            # As the SDK does: MCPError and ValidationError map to their codes; anything
            # else is logged and answered as an internal error that says nothing more.
            await _send_error(send, request_id, modern_error_data(exc))
            return True
        await _send_json(send, 200, {"jsonrpc": "2.0", "id": request_id, "result": wire})
        return True

    def _param_headers_rejected(
        self, request: Request, params: Mapping[str, Any]
    ) -> InboundLadderRejection | None:
        """The SDK's check of ``Mcp-Param-*`` headers against the tool's input schema
        (SEP-2243), as its transport makes it: a missing, mismatched or malformed
        header is HTTP 400."""
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, Mapping):
            return None
        if not arguments and not any(h.startswith("mcp-param-") for h in request.headers):
            return None  # nothing a declaration could disagree with
        schema = self._input_schema(request, name)
        if schema is None:
            return None
        return validate_mcp_param_headers(schema, arguments, request.headers)

    def _serialize(
        self, version: str, result: dict[str, Any] | types.InputRequiredResult
    ) -> dict[str, Any]:
        """The result on the wire, shaped as the SDK's server runner shapes it."""
        if not isinstance(result, dict):  # an input_required result
            result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return _wire_result(self._server, "tools/call", version, result)


class DirectLists:
    """Answers the sessionless list requests it can take, from results kept as written;
    declines the rest."""

    def __init__(
        self, server: Server[Any], security: TransportSecurityMiddleware, *, answer: ListAnswer
    ) -> None:
        self._server = server
        self._security = security
        self._answer = answer
        # Listing.key -> (the listing, its result as JSON). The listing holds the
        # definitions its key names by id, so no other object can take their ids.
        self._written: OrderedDict[tuple[Any, ...], tuple[Listing, bytes]] = OrderedDict()

    def __len__(self) -> int:
        """How many results are kept (at most `KEPT_LISTS`)."""
        return len(self._written)

    @staticmethod
    def may_take(request: Request) -> bool:
        """A cheap first look, before the body is read: a sessionless list."""
        headers = request.headers
        return (
            headers.get(MCP_METHOD_HEADER) in LIST_METHODS
            and headers.get(MCP_PROTOCOL_VERSION_HEADER) in MODERN_PROTOCOL_VERSIONS
        )

    async def answer(self, request: Request, body: bytes, send: Send) -> bool:
        """Answers the request and returns True, or returns False (nothing sent) when
        it is for the SDK's transport after all."""
        method = request.headers.get(MCP_METHOD_HEADER)
        if method not in LIST_METHODS:
            return False
        accepted = await _accepted(self._security, request, body, method)
        if accepted is None:
            return False
        decoded, params = accepted
        request_id = decoded["id"]
        version = await _version(request, decoded, send)
        if version is None:
            return True
        try:
            # As the SDK's runner: the revision's check, then the handler's params.
            spec_methods.validate_client_request(method, version, params)
            types.PaginatedRequestParams.model_validate(params, by_name=False)
            listing = await self._answer(request, method, version)
            written = self._written_result(method, version, listing)
        except Exception as exc:
            await _send_error(send, request_id, modern_error_data(as_retry(exc, method)))
            return True
        # The envelope as the SDK's transport writes it (`jsonrpc`, `id`, `result`).
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":'
        await _send_body(send, 200, b"".join((head, written, b"}")))
        return True

    def _written_result(self, method: str, version: str, listing: Listing) -> bytes:
        kept = self._written.get(listing.key)
        if kept is not None:
            self._written.move_to_end(listing.key)
            return kept[1]
        wire = _wire_result(self._server, method, version, listing.result)
        written = json.dumps(wire, separators=(",", ":")).encode()
        self._written[listing.key] = (listing, written)
        while len(self._written) > KEPT_LISTS:
            self._written.popitem(last=False)
        return written


async def _accepted(
    security: TransportSecurityMiddleware, request: Request, body: bytes, method: str
) -> tuple[dict[str, Any], Mapping[str, Any]] | None:
    """The decoded request the direct path may answer, and its params; or None: the
    SDK's transport answers it (and sends the exact refusal of anything refused)."""
    if await security.validate_request(request, is_post=True) is not None:
        return None
    has_json, has_sse = check_accept_headers(request)
    if not (has_json and has_sse):
        return None
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not _is_plain_request(decoded, method):
        return None
    params: Mapping[str, Any] = decoded["params"]
    if progress_token_from_params(params) is not None:
        return None  # progress needs an event stream
    meta = params.get("_meta")
    if isinstance(meta, dict) and meta.get(LOG_LEVEL_META_KEY) is not None:
        return None  # so do log messages
    if find_duplicated_routing_header(request.headers.items()) is not None:
        return None
    return decoded, params


async def _version(request: Request, decoded: dict[str, Any], send: Send) -> str | None:
    """The request's protocol revision, by the SDK's classifier; None when it refused
    the request (its error is sent)."""
    verdict = classify_inbound_request(decoded, headers=dict(request.headers))
    if isinstance(verdict, InboundLadderRejection):
        error = types.ErrorData(code=verdict.code, message=verdict.message, data=verdict.data)
        await _send_error(send, decoded["id"], error)
        return None
    return verdict.protocol_version


def _wire_result(
    server: Server[Any], method: str, version: str, dumped: Mapping[str, Any]
) -> dict[str, Any]:
    """A result as the SDK's server runner shapes it for the wire (`_serialize`): the
    method's cache hint, the revision's serializer, ``resultType``, the ``serverInfo``
    stamp."""
    hint = server.cache_hints.get(method)
    if hint is not None:
        # Hint keys first, so the result's own keys win (as the runner does).
        dumped = {"ttlMs": hint.ttl_ms, "cacheScope": hint.scope, **dumped}
    try:
        wire = spec_methods.serialize_server_result(method, version, dumped)
    except ValidationError:
        log.exception("%s produced an invalid result", method)
        raise MCPError(
            code=types.INTERNAL_ERROR, message="Handler returned an invalid result"
        ) from None
    wire.setdefault("resultType", "complete")
    meta = wire.get("_meta")
    if meta is None:
        wire["_meta"] = {SERVER_INFO_META_KEY: server.server_info_stamp}
    elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
        wire["_meta"] = {**meta, SERVER_INFO_META_KEY: server.server_info_stamp}
    return wire


def _is_plain_request(decoded: Any, method: str) -> bool:
    """One JSON-RPC request for ``method`` with an object for params and a valid id;
    anything else (a batch, a notification, a malformed envelope) is the SDK's to refuse."""
    if not isinstance(decoded, dict) or decoded.get("jsonrpc") != "2.0":
        return False
    request_id = decoded.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return False
    return decoded.get("method") == method and isinstance(decoded.get("params"), dict)


async def _send_error(send: Send, request_id: Any, error: types.ErrorData) -> None:
    status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": error.model_dump(by_alias=True, mode="json", exclude_none=True),
    }
    await _send_json(send, status, body)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _send_body(
        send, status, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    )


async def _send_body(send: Send, status: int, data: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(data)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
