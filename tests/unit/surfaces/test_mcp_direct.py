"""Which requests the direct ``tools/call`` path takes, and what it sends back, with
the translation into the pipeline replaced by a stub (the e2e tests compare the real
thing with the SDK's transport)."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.requests import Request

from gateway.surfaces.mcp_direct import DirectToolsCall

pytestmark = pytest.mark.anyio

VERSION = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
}


class Stub:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[types.CallToolRequestParams] = []
        self.error = error

    async def __call__(
        self, request: Request, params: types.CallToolRequestParams
    ) -> dict[str, Any]:
        self.calls.append(params)
        if self.error is not None:
            raise self.error
        text = f"ran {params.name}"
        return {"content": [{"type": "text", "text": text}], "resultType": "complete"}


def _path(stub: Stub) -> DirectToolsCall:
    security = TransportSecurityMiddleware(
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=["gw.test"], allowed_origins=[]
        )
    )
    return DirectToolsCall(
        Server("test", version="1"),
        security,
        answer=stub,
        declines=lambda name: name.startswith("workflow__"),
        input_schema=lambda request, name: None,
    )


def _request(headers: dict[str, str]) -> Request:
    base = {
        "host": "gw.test",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": VERSION,
        "mcp-method": "tools/call",
        "mcp-name": "up__echo",
    }
    merged = {**base, **headers}
    raw = [(k.encode(), v.encode()) for k, v in merged.items() if v is not None]
    return Request({"type": "http", "method": "POST", "path": "/mcp", "headers": raw})


def _body(params: dict[str, Any] | None = None, **envelope: Any) -> bytes:
    message = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": params
        if params is not None
        else {"name": "up__echo", "arguments": {"text": "hi"}, "_meta": ENVELOPE},
        **envelope,
    }
    return json.dumps(message).encode()


async def _answer(path: DirectToolsCall, request: Request, body: bytes) -> tuple[bool, list[Any]]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    return await path.answer(request, body, send), sent


async def test_a_sessionless_call_is_answered_with_the_sdks_result_shape() -> None:
    stub = Stub()
    path = _path(stub)
    request = _request({})
    assert path.may_take(request)
    taken, sent = await _answer(path, request, _body())
    assert taken
    assert [p.name for p in stub.calls] == ["up__echo"]
    assert sent[0]["status"] == 200
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    message = json.loads(sent[1]["body"])
    assert message["id"] == 3
    assert message["result"]["content"] == [{"type": "text", "text": "ran up__echo"}]
    assert message["result"]["resultType"] == "complete"
    assert message["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "test"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (
            {},
            _body({"name": "up__echo", "arguments": {}, "_meta": {**ENVELOPE, "progressToken": 1}}),
        ),
        (
            {"mcp-name": "workflow__submit"},
            _body({"name": "workflow__submit", "arguments": {}, "_meta": ENVELOPE}),
        ),
        ({"host": "evil.test"}, _body()),  # the SDK sends the exact refusal
        ({"accept": "application/json"}, _body()),
        ({}, b"[" + _body() + b"]"),  # a batch
        ({}, b"{not json"),
        ({}, _body(jsonrpc="1.0")),
        ({}, _body(id=True)),
    ],
)
async def test_what_it_leaves_to_the_sdk(headers: dict[str, str], body: bytes) -> None:
    stub = Stub()
    taken, sent = await _answer(_path(stub), _request(headers), body)
    assert not taken
    assert sent == [] and stub.calls == []


@pytest.mark.parametrize(
    "headers", [{"mcp-method": "tools/list"}, {"mcp-protocol-version": "2025-11-25"}]
)
def test_only_sessionless_tools_calls_are_considered(headers: dict[str, str]) -> None:
    assert not DirectToolsCall.may_take(_request(headers))


async def test_an_envelope_that_disagrees_with_the_headers_is_refused_without_a_call() -> None:
    stub = Stub()
    taken, sent = await _answer(_path(stub), _request({"mcp-name": "up__other"}), _body())
    assert taken and stub.calls == []
    assert sent[0]["status"] == 400
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == types.HEADER_MISMATCH


async def test_an_mcp_error_keeps_its_code_and_a_bug_says_nothing_internal() -> None:
    refusal = MCPError(code=types.INVALID_PARAMS, message="unknown tool", data={"tool": "x"})
    _, sent = await _answer(_path(Stub(refusal)), _request({}), _body())
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == {
        "code": types.INVALID_PARAMS,
        "message": "unknown tool",
        "data": {"tool": "x"},
    }
    _, sent = await _answer(_path(Stub(RuntimeError("secret detail"))), _request({}), _body())
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == types.INTERNAL_ERROR
    assert "secret" not in json.dumps(error)
