"""How the lean forward (here a ``tools/call``) reads what an upstream answers, against a raw
loopback socket serving canned HTTP responses: JSON or an event stream, JSON-RPC
errors, a header mismatch (handed to the SDK), and answers that are not results."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import mcp_types as types
import pytest
from anyio.abc import SocketAttribute, SocketStream
from mcp.shared.exceptions import MCPError

from gateway.errors import UpstreamError
from gateway.upstreams.mcp_lean_call import LeanToolCaller, NeedsSdk
from tests.support.waiting import TIMEOUT_S

pytestmark = pytest.mark.anyio

VERSION = "2026-07-28"


def _http(body: bytes, content_type: str = "application/json", status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def _result(request_id: int, **result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode()


async def _ask(reply: bytes) -> tuple[Any, bytes]:
    """Calls ``echo`` once against a server answering ``reply``; returns what the call
    returned (or raised) and the request the server received."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    received = bytearray()

    async def answer(stream: SocketStream) -> None:
        async with stream:
            while b"\r\n\r\n" not in received:
                received.extend(await stream.receive())
            head, _, body = bytes(received).partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                chunk = await stream.receive()
                body += chunk
                received.extend(chunk)
            await stream.send(reply)

    caller = LeanToolCaller("up", f"http://127.0.0.1:{port}/mcp", headers={"X-Static": "1"})
    outcome: Any
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, answer)
        try:
            with anyio.fail_after(TIMEOUT_S):
                outcome = await caller.send(
                    "tools/call",
                    {"name": "echo", "arguments": {"text": "hi"}},
                    protocol_version=VERSION,
                    headers={"Authorization": "Bearer minted"},
                )
        except Exception as exc:
            outcome = exc
        finally:
            await caller.aclose()
            tasks.cancel_scope.cancel()
    return outcome, bytes(received)


async def test_a_json_result_and_the_request_that_asked_for_it() -> None:
    result, request = await _ask(
        _http(_result(1, content=[{"type": "text", "text": "hi"}], isError=False))
    )
    assert result.content[0].text == "hi"
    head, _, body = request.partition(b"\r\n\r\n")
    lines = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    lines = {name.lower(): value for name, value in lines.items()}
    assert lines[b"mcp-protocol-version"] == VERSION.encode()
    assert lines[b"mcp-method"] == b"tools/call"
    assert lines[b"mcp-name"] == b"echo"
    assert lines[b"authorization"] == b"Bearer minted"
    assert lines[b"x-static"] == b"1"
    assert lines[b"accept"] == b"application/json, text/event-stream"
    sent = json.loads(body)
    assert sent["method"] == "tools/call"
    assert sent["params"]["arguments"] == {"text": "hi"}
    assert sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == VERSION
    assert sent["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] == {}


async def test_an_event_stream_answer_skips_notifications() -> None:
    stream = (
        b"event: message\r\ndata: "
        + json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}).encode()
        + b"\r\n\r\nevent: message\r\ndata: "
        + _result(1, content=[{"type": "text", "text": "streamed"}])
        + b"\r\n\r\n"
    )
    result, _ = await _ask(_http(stream, "text/event-stream"))
    assert result.content[0].text == "streamed"


async def test_an_input_required_answer_is_handed_to_the_relay() -> None:
    asked = {"k": {"method": "roots/list"}}
    outcome, _ = await _ask(_http(_result(1, resultType="input_required", inputRequests=asked)))
    assert isinstance(outcome, types.InputRequiredResult), outcome
    assert list(outcome.input_requests or {}) == ["k"]


async def test_a_json_rpc_error_keeps_its_code_for_the_client() -> None:
    """Raised as the SDK's client raises it, for `mcp_requests.run` to map the same way."""
    error = {"code": -32021, "message": "Missing capability", "data": {"need": "sampling"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "error": error}).encode()
    outcome, _ = await _ask(_http(body, status="400 Bad Request"))
    assert isinstance(outcome, MCPError), outcome
    assert (outcome.code, outcome.message, outcome.data) == (
        -32021,
        "Missing capability",
        {"need": "sampling"},
    )


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            _http(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}}
                ).encode(),
                status="400 Bad Request",
            ),
            MCPError,
            r"^bad$",
        ),
        (
            _http(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "error": {"code": -32020, "message": "changed"}}
                ).encode(),
                status="400 Bad Request",
            ),
            NeedsSdk,
            "changed",
        ),
        (_http(b"<html>oops</html>", "text/html", "502 Bad Gateway"), UpstreamError, "HTTP 502"),
        (_http(_result(1, resultType="task", content=[])), UpstreamError, "'task' result"),
        (_http(_result(1, content="not a list")), UpstreamError, "malformed result"),
        (
            _http(b"event: message\r\ndata: {}\r\n\r\n", "text/event-stream"),
            UpstreamError,
            "without answering",
        ),
    ],
)
async def test_answers_that_are_not_results(reply: bytes, error: type, message: str) -> None:
    outcome, _ = await _ask(reply)
    assert isinstance(outcome, error), outcome
    assert re.search(message, str(outcome)), str(outcome)
