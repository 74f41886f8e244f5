"""A lean ``tools/call``, ``resources/read`` or ``prompts/get`` to an MCP upstream over
Streamable HTTP, sessionless era.

Why it exists: a forward through the SDK's client (httpx, its dispatcher, the
per-request task machinery) cost more than the whole direct call it relays —
≈ 0.7 ms of client overhead per call on this machine, against ≈ 0.7 ms for the
upstream server's own work (bench/README.md, docs/decisions/0010); measured again
in place, 2.6–4.6 ms of the gateway's CPU per call (docs/decisions/0026). At the
2026-07-28 revision each of these requests is one self-contained POST, so the gateway
sends it itself over the keep-alive client of `gateway.http_client`.

The SDK client stays in charge of everything else: connecting and negotiating the
revision, ``tools/list`` (which also teaches this module the tools' ``Mcp-Param``
headers), requests that want progress or logs, and every request at the
handshake-era revisions, whose sessions the SDK holds. A request this module cannot
complete as the SDK would — the upstream says its headers mismatch (the tool changed
since it was listed) — raises `NeedsSdk`, and the caller sends it through the SDK,
which re-lists and retries once.

This module sends one round; the caller runs every round inside
`gateway.upstreams.mcp_requests.run` exactly as it runs the SDK's: an ``input_required``
answer comes back as the `InputRequiredResult` it is (`mcp_client_input.until_complete`
asks the calling client and sends the request again with ``inputResponses`` and the
upstream's ``requestState``), and a JSON-RPC error answer is raised as the SDK's
`MCPError`, so ``run`` maps it as it maps the SDK's (a timeout, a URL elicitation
checked under policy, `UpstreamRejected` with the upstream's code, message and data).

The request is what the SDK would send: the routing headers (``MCP-Protocol-Version``,
``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``), the ``_meta`` envelope of the revision
(with the client capabilities the gateway can relay), and the upstream's own
credential headers. The answer is accepted as JSON or as an event stream
(notifications in it are ignored: no progress was asked for).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    encode_header_value,
    mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    HEADER_MISMATCH,
    PROTOCOL_VERSION_META_KEY,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    ReadResourceResult,
)
from mcp_types import methods as spec_methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from gateway.errors import UpstreamError
from gateway.http_client import KeepAliveClient
from gateway.upstreams.definitions import UpstreamTool
from gateway.version import __version__

ACCEPT = "application/json, text/event-stream"
CLIENT_INFO = {"name": "agent-tool-gateway", "version": __version__}
# A tool result may be large (a file's contents); the SDK path sets no limit at all.
MAX_RESULT_BYTES = 64 * 1024 * 1024

# The methods this module sends: the parameter each names in `Mcp-Name`, and the model
# of its complete result.
NAME_PARAMS = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
RESULTS: dict[str, type[BaseModel]] = {
    "tools/call": CallToolResult,
    "resources/read": ReadResourceResult,
    "prompts/get": GetPromptResult,
}


class NeedsSdk(Exception):
    """This request must go through the SDK client (which re-lists the tools and retries)."""


def is_sessionless(protocol_version: str | None) -> bool:
    """Whether a negotiated revision sends each request as a self-contained POST."""
    return protocol_version in MODERN_PROTOCOL_VERSIONS


class LeanToolCaller:
    """``tools/call``, ``resources/read`` and ``prompts/get`` POSTs to one upstream URL
    over pooled keep-alive connections."""

    def __init__(self, name: str, url: str, *, headers: Mapping[str, str]) -> None:
        self.name = name
        parts = urlsplit(url)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._http = KeepAliveClient(
            f"{parts.scheme}://{parts.netloc}",
            max_response_bytes=MAX_RESULT_BYTES,
            # A tool call is not resent on another connection: it may have run.
            retry_unanswered=False,
        )
        self._headers = dict(headers)
        # Tool name → the `Mcp-Param-*` headers its input schema declares (most: none).
        self._param_headers: dict[str, dict[tuple[str, ...], str]] = {}
        self._next_id = 0

    def learn(self, tools: list[UpstreamTool]) -> None:
        """Remembers which arguments each tool wants mirrored into headers."""
        self._param_headers = {
            tool.name: declared
            for tool in tools
            if (declared := x_mcp_header_map(tool.input_schema))
        }

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        params: dict[str, Any],
        *,
        protocol_version: str,
        headers: Mapping[str, str],
        meta: Mapping[str, Any] | None = None,
        capabilities: Mapping[str, Any] | None = None,
        input_responses: Mapping[str, Any] | None = None,
        request_state: str | None = None,
    ) -> Any:
        """One round of a request of a method in `NAME_PARAMS`: its complete result (the
        method's model in `RESULTS`) or an `InputRequiredResult` for the relay. Raises
        what `request` raises, and `UpstreamError` for a result of another kind or of
        the wrong shape."""
        raw = await self.request(
            method,
            params,
            protocol_version=protocol_version,
            headers=headers,
            meta=meta,
            capabilities=capabilities,
            input_responses=input_responses,
            request_state=request_state,
        )
        what = params[NAME_PARAMS[method]]
        kind = raw.get("resultType", "complete")
        if kind not in ("complete", "input_required"):
            raise UpstreamError(
                f"upstream {self.name} answered {what} with a {kind!r} result; the gateway "
                "relays only complete and input_required results"
            )
        if method != "tools/call":
            try:  # what the SDK's client checks of a result, for the revision negotiated
                spec_methods.validate_server_result(method, protocol_version, raw)
            except ValidationError as exc:
                raise UpstreamError(
                    f"upstream {self.name} answered {what} with a result of the wrong shape "
                    f"({exc.error_count()} validation error(s))"
                ) from None
        model = InputRequiredResult if kind == "input_required" else RESULTS[method]
        try:  # as the SDK's client reads it: wire names only
            return model.model_validate(raw, by_name=False)
        except ValidationError as exc:
            raise UpstreamError(
                f"upstream {self.name} answered {what} with a malformed result: "
                f"{exc.error_count()} validation error(s)"
            ) from None

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        protocol_version: str,
        headers: Mapping[str, str],
        meta: Mapping[str, Any] | None = None,
        capabilities: Mapping[str, Any] | None = None,
        input_responses: Mapping[str, Any] | None = None,
        request_state: str | None = None,
    ) -> dict[str, Any]:
        """Sends one request of a method in `NAME_PARAMS` and returns its result object,
        unchecked. Raises the SDK's `MCPError` for a JSON-RPC error answer (the caller's
        `mcp_requests.run` maps it), `NeedsSdk` for a header mismatch, `UpstreamError`
        for an answer that is neither a result nor a well-formed error, and
        `gateway.http_client.HttpTransportError` when no complete HTTP response arrived
        (``run`` treats the upstream as down)."""
        self._next_id += 1
        request_id = self._next_id
        envelope = {
            PROTOCOL_VERSION_META_KEY: protocol_version,
            CLIENT_INFO_META_KEY: CLIENT_INFO,
            # What the calling client can be asked through the gateway, nothing more: an
            # upstream then asks only for what will be relayed.
            CLIENT_CAPABILITIES_META_KEY: dict(capabilities or {}),
            **(meta or {}),
        }
        sent: dict[str, Any] = {**params, "_meta": envelope}
        if input_responses is not None:
            sent["inputResponses"] = dict(input_responses)
        if request_state is not None:
            sent["requestState"] = request_state
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": sent},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        name = params[NAME_PARAMS[method]]
        routing = {
            MCP_PROTOCOL_VERSION_HEADER: protocol_version,
            MCP_METHOD_HEADER: method,
            MCP_NAME_HEADER: encode_header_value(name),
        }
        declared = self._param_headers.get(name) if method == "tools/call" else None
        if declared:
            routing.update(mcp_param_headers(declared, params["arguments"]))
        response = await self._http.request(
            "POST",
            self._target,
            body,
            headers={**self._headers, **headers, **routing},
            accept=ACCEPT,
        )
        message = self._answer(response.content_type, response.body, request_id, response.status)
        error = message.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            if code == HEADER_MISMATCH:
                raise NeedsSdk(str(text))
            if isinstance(code, int) and not isinstance(code, bool) and isinstance(text, str):
                # A JSON-RPC error answer, as the SDK's client raises it.
                raise MCPError(code, text, error.get("data"))
            raise UpstreamError(
                f"upstream {self.name} rejected {name}: {text or 'no message'} (JSON-RPC {code})"
            )
        result = message.get("result")
        if not isinstance(result, dict):
            raise UpstreamError(f"upstream {self.name} answered {name} without a result")
        return result

    def _answer(
        self, content_type: str, body: bytes, request_id: int, status: int
    ) -> dict[str, Any]:
        """The JSON-RPC message answering ``request_id``, from a JSON body or an event stream."""
        if content_type == "text/event-stream":
            for message in _event_stream_messages(body):
                if message.get("id") == request_id and ("result" in message or "error" in message):
                    return message
            raise UpstreamError(
                f"upstream {self.name} closed its event stream without answering (HTTP {status})"
            )
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if not isinstance(message, dict) or ("result" not in message and "error" not in message):
            raise UpstreamError(
                f"upstream {self.name} answered HTTP {status} without a JSON-RPC message"
            )
        return message


def dump_answers(responses: dict[str, Any]) -> dict[str, Any]:
    """Input responses (the SDK's models) as the wire spells them."""
    return {
        key: value.model_dump(by_alias=True, mode="json", exclude_none=True)
        for key, value in responses.items()
    }


def _event_stream_messages(body: bytes) -> list[dict[str, Any]]:
    """The JSON objects carried by the ``data`` fields of a complete event stream."""
    messages: list[dict[str, Any]] = []
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    for event in text.split("\n\n"):
        data = "\n".join(
            line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")
        )
        if not data:
            continue
        try:
            message = json.loads(data)
        except ValueError:
            continue
        if isinstance(message, dict):
            messages.append(message)
    return messages
