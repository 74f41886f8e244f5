"""`/mcp` answers a sessionless ``tools/call`` without the SDK's transport
(gateway/surfaces/mcp_direct.py) and must answer exactly as the SDK would.

A progress token sends the same request through the SDK's transport instead, so each
test sends every request both ways and compares: results, JSON-RPC errors and HTTP
statuses must match, apart from the per-request ids."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.surfaces.mcp import META_KEY
from tests.support.processes import GatewayServer

VERSION = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
}


def _post(
    gateway: GatewayServer,
    params: dict[str, Any],
    *,
    via_sdk: bool,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    meta = dict(params.get("_meta", ENVELOPE))
    if via_sdk:
        meta["progressToken"] = "p-1"
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {**params, "_meta": meta}}
    sent_headers = {
        **gateway.headers(),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": str(params.get("name", "")),
        **(headers or {}),
    }
    response = httpx.post(gateway.mcp_url, json=body, headers=sent_headers, timeout=15)
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return response.status_code, json.loads(data[-1])
    return response.status_code, response.json()


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    result = message.get("result")
    if isinstance(result, dict) and META_KEY in result.get("_meta", {}):
        decision = dict(result["_meta"][META_KEY])
        decision.pop("request_id")
        result = {**result, "_meta": {**result["_meta"], META_KEY: decision}}
        message = {**message, "result": result}
    error = message.get("error")
    if isinstance(error, dict) and isinstance(error.get("data"), dict):
        data = {k: v for k, v in error["data"].items() if k != "request_id"}
        message = {**message, "error": {**error, "data": data}}
    return message


def test_an_allowed_call_answers_as_the_sdk_would(gateway: GatewayServer) -> None:
    params = {"name": "up__echo", "arguments": {"text": "same"}}
    direct_status, direct = _post(gateway, params, via_sdk=False)
    sdk_status, sdk = _post(gateway, params, via_sdk=True)
    assert direct_status == sdk_status == 200
    assert direct["result"]["content"] == [{"type": "text", "text": "same"}]
    assert direct["result"]["resultType"] == "complete"
    assert direct["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
    assert direct["result"]["_meta"][META_KEY]["status"] == "ok"
    assert _without_ids(direct) == _without_ids(sdk)


def test_a_denied_call_answers_as_the_sdk_would(gateway: GatewayServer) -> None:
    params = {"name": "up__write", "arguments": {"key": "k", "value": "v"}}
    direct_status, direct = _post(gateway, params, via_sdk=False)
    sdk_status, sdk = _post(gateway, params, via_sdk=True)
    assert direct_status == sdk_status == 200
    assert direct["result"]["isError"] is True
    assert direct["result"]["_meta"][META_KEY]["status"] == "denied"
    assert _without_ids(direct) == _without_ids(sdk)


@pytest.mark.parametrize(
    ("params", "headers", "code"),
    [
        ({"name": "up__nope", "arguments": {}}, None, -32602),  # unknown tool
        ({"name": "up__echo", "arguments": {"text": "x"}}, {"Mcp-Name": "up__other"}, -32020),
        (
            {"name": "up__echo", "arguments": {"text": "x"}},
            {"MCP-Protocol-Version": "2025-11-25"},
            None,  # a handshake-era header: not this path's; the SDK answers both
        ),
        ({"name": "up__echo", "arguments": "not an object"}, None, -32602),
        ({"arguments": {"text": "x"}}, {"Mcp-Name": ""}, -32602),  # no tool name
        (
            {
                "name": "up__echo",
                "arguments": {"text": "x"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": VERSION},
            },
            None,
            -32602,  # the envelope lacks clientCapabilities
        ),
    ],
)
def test_refusals_answer_as_the_sdk_would(
    gateway: GatewayServer,
    params: dict[str, Any],
    headers: dict[str, str] | None,
    code: int | None,
) -> None:
    direct_status, direct = _post(gateway, params, via_sdk=False, headers=headers)
    sdk_status, sdk = _post(gateway, params, via_sdk=True, headers=headers)
    assert direct_status == sdk_status
    assert _without_ids(direct) == _without_ids(sdk)
    if code is not None:
        assert direct_status == 400
        assert direct["error"]["code"] == code
        assert direct["id"] == 7


def test_a_request_from_another_host_is_refused_before_any_call(
    gateway: GatewayServer, mcp_upstream: Any
) -> None:
    before = len(mcp_upstream.calls())
    params = {"name": "up__echo", "arguments": {"text": "rebinding"}}
    status, _ = _post_raw_status(gateway, params, {"Host": "evil.example:80"})
    assert status == 421
    assert len(mcp_upstream.calls()) == before


def _post_raw_status(
    gateway: GatewayServer, params: dict[str, Any], headers: dict[str, str]
) -> tuple[int, str]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {**params, "_meta": ENVELOPE},
    }
    response = httpx.post(
        gateway.mcp_url,
        json=body,
        headers={
            **gateway.headers(),
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": VERSION,
            "Mcp-Method": "tools/call",
            "Mcp-Name": str(params["name"]),
            **headers,
        },
        timeout=15,
    )
    return response.status_code, response.text
