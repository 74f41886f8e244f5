"""The direct path's lists (gateway/surfaces/mcp_direct.py, docs/decisions/0038), in
process: unavailability answers as through the SDK's transport, a result is kept
under its listing's key only, and the kept results are bounded. (End to end, against
the SDK's transport byte for byte: tests/e2e/test_mcp_direct_lists.py.)"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request

from gateway.errors import PolicyUnavailable
from gateway.surfaces.mcp_direct import KEPT_LISTS, DirectLists
from gateway.surfaces.mcp_lists import ListAnswer, Listing

VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "unit", "version": "1"},
}


def direct(answer: ListAnswer) -> DirectLists:
    hints = {method: CacheHint(ttl_ms=0, scope="private") for method in CACHEABLE_METHODS}
    server: Server[Any] = Server("unit", cache_hints=hints)
    security = TransportSecurityMiddleware(
        TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    return DirectLists(server, security, answer=answer)


def listing(key: int, names: list[str]) -> Listing:
    tools = [{"name": name, "inputSchema": {"type": "object"}} for name in names]
    return Listing({"tools": tools, "resultType": "complete"}, ("tools/list", key), ())


def ask(lists: DirectLists, method: str = "tools/list") -> tuple[int, dict[str, Any]]:
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": method, "params": {"_meta": META}})
    headers = {
        "host": "127.0.0.1:8000",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": VERSION,
        "mcp-method": method,
    }
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def run() -> None:
        request = Request(scope)
        assert lists.may_take(request)
        assert await lists.answer(request, body.encode(), send)

    anyio.run(run)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_an_engine_without_an_answer_is_retry_later_not_an_empty_list() -> None:
    async def unavailable(*_: Any) -> Listing:
        raise PolicyUnavailable("no decision in time", retry_after_s=1)

    status, message = ask(direct(unavailable))
    # As `unavailability_as_retry` answers through the SDK's transport
    # (tests/unit/surfaces/test_mcp_unavailability.py).
    assert message["error"]["code"] == -32000
    assert message["error"]["data"]["retry_after_s"] == 1
    assert "result" not in message and message["id"] == 3
    assert status == 200


def test_a_result_is_kept_under_its_listing_key_only() -> None:
    shown = {"now": listing(1, ["a", "b"])}

    async def answer(*_: Any) -> Listing:
        return shown["now"]

    lists = direct(answer)
    _, first = ask(lists)
    assert [t["name"] for t in first["result"]["tools"]] == ["a", "b"]
    assert first["result"]["ttlMs"] == 0 and first["result"]["cacheScope"] == "private"
    shown["now"] = listing(2, ["a"])  # another listing: written anew
    _, second = ask(lists)
    assert [t["name"] for t in second["result"]["tools"]] == ["a"]
    shown["now"] = listing(1, ["a", "b"])
    assert ask(lists) == (200, first)


def test_kept_results_are_bounded() -> None:
    count = {"n": 0}

    async def answer(*_: Any) -> Listing:
        count["n"] += 1
        return listing(count["n"], [f"t{count['n']}"])

    lists = direct(answer)
    for _ in range(KEPT_LISTS + 10):
        ask(lists)
    assert len(lists) == KEPT_LISTS


@pytest.mark.parametrize("method", ["tools/call", "initialize"])
def test_only_lists_are_taken(method: str) -> None:
    async def answer(*_: Any) -> Listing:
        raise AssertionError("not a list")

    headers = [(b"mcp-method", method.encode()), (b"mcp-protocol-version", VERSION.encode())]
    request = Request({"type": "http", "method": "POST", "path": "/mcp", "headers": headers})
    assert not direct(answer).may_take(request)
