"""The gateway's book of 2025-11-25 sessions (gateway.surfaces.mcp_sessions) beside the
MCP SDK's own session manager, in process: a session is in the book before its client
can read its id, so a request the client sends the moment it has the id is one of the
session's, never an unknown one."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Message

from gateway.config import McpSessionsConfig
from gateway.surfaces.mcp_sessions import SessionBook, Sessions
from gateway.types import Principal

pytestmark = pytest.mark.anyio

PRINCIPAL = Principal(sub="agent:early", iss="https://issuer.test", roles=("agent",))
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "early", "version": "1"},
    },
}


def _scope(body: bytes) -> dict[str, Any]:
    headers = {
        b"host": b"127.0.0.1",
        b"content-type": b"application/json",
        b"accept": b"application/json, text/event-stream",
        b"content-length": str(len(body)).encode(),
    }
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": list(headers.items()),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def test_a_session_is_in_the_book_when_its_client_gets_its_id() -> None:
    book = SessionBook(idle_timeout_s=60)
    sessions = Sessions(
        Server("book-test"),
        McpSessionsConfig(),
        book,
        security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_body_bytes=1 << 20,
    )
    body = json.dumps(INITIALIZE).encode()
    delivered = False
    seen: dict[str, bool] = {}

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        # The client: the moment it reads the id, the book must know the session.
        if message["type"] == "http.response.start":
            headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            session_id = headers.get(MCP_SESSION_ID_HEADER.lower())
            assert session_id is not None, headers
            seen[session_id] = book.get(session_id) is not None

    async with sessions.run():
        with anyio.fail_after(30):
            await sessions.serve_stateful(
                _scope(body), receive, send, principal=PRINCIPAL, upstream=None
            )
    assert list(seen.values()) == [True], seen
