"""`/mcp` answers a sessionless list without the SDK's transport, from a result written
once per what is listed (gateway/surfaces/mcp_direct.py, docs/decisions/0038), and
must answer exactly as the SDK would.

A progress token sends the same request through the SDK's transport instead, so each
test sends every request both ways and compares the bytes of the answer, the JSON-RPC
errors and the HTTP statuses."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.processes import GatewayServer

VERSION = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
}
LISTS = ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]
FIELD = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


def _post(
    gateway: GatewayServer,
    method: str,
    *,
    via_sdk: bool,
    path: str = "/mcp",
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    request_id: Any = 7,
    **token: Any,
) -> httpx.Response:
    params = dict(params if params is not None else {"_meta": ENVELOPE})
    if via_sdk:
        params["_meta"] = {**params.get("_meta", {}), "progressToken": "p-1"}
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    sent_headers = {
        **gateway.headers(**token),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": method,
        **(headers or {}),
    }
    return httpx.post(gateway.url + path, json=body, headers=sent_headers, timeout=15)


def _message(response: httpx.Response) -> Any:
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def _both(gateway: GatewayServer, method: str, **how: Any) -> tuple[httpx.Response, Any]:
    direct = _post(gateway, method, via_sdk=False, **how)
    sdk = _post(gateway, method, via_sdk=True, **how)
    assert direct.status_code == sdk.status_code
    assert _message(direct) == _message(sdk)
    if direct.headers["content-type"] == "application/json":
        # The SDK answers JSON too, unless its handler ran past 15 s (an event stream).
        if sdk.headers["content-type"] == "application/json":
            assert direct.content == sdk.content  # byte for byte
    return direct, _message(direct)


@pytest.mark.parametrize("path", ["/mcp", "/mcp/up"])
@pytest.mark.parametrize("method", LISTS)
def test_a_list_answers_as_the_sdk_would(
    offerings_gateway: GatewayServer, method: str, path: str
) -> None:
    response, message = _both(offerings_gateway, method, path=path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    result = message["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
    assert result[FIELD[method]], "the offerings gateway lists something of every kind"
    # Kept as written, answered again: the same, under this request's id.
    again = _post(offerings_gateway, method, via_sdk=False, path=path, request_id="again")
    assert again.json() == {**message, "id": "again"}


@pytest.mark.parametrize("method", LISTS)
def test_each_principal_sees_its_own_list(offerings_gateway: GatewayServer, method: str) -> None:
    """A kept result is the writing of what this request listed, never of what another
    principal saw: one who may see nothing, between two who may see everything."""
    _, seeing = _both(offerings_gateway, method, sub="agent:a")
    _, blind = _both(offerings_gateway, method, sub="agent:blind", roles=())
    _, again = _both(offerings_gateway, method, sub="agent:b")
    assert seeing["result"][FIELD[method]]
    assert blind["result"][FIELD[method]] == []
    assert again == seeing


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"_meta": ENVELOPE, "cursor": 5}, None),  # a cursor is a string
        ({"_meta": {"io.modelcontextprotocol/protocolVersion": VERSION}}, None),  # no caps
        ({"_meta": ENVELOPE}, {"Mcp-Method": "prompts/list"}),  # header ≠ body: the SDK's
        ({"_meta": ENVELOPE}, {"MCP-Protocol-Version": "2025-11-25"}),  # another era
    ],
)
def test_refusals_answer_as_the_sdk_would(
    offerings_gateway: GatewayServer, params: dict[str, Any], headers: dict[str, str] | None
) -> None:
    response, message = _both(offerings_gateway, "tools/list", params=params, headers=headers)
    if headers is None:
        assert response.status_code == 400
        assert message["error"]["code"] == -32602
        assert message["id"] == 7
