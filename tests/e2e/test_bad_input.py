"""Bad input and broken upstreams, end to end: every malformed or oversized request gets
a clear 4xx and changes nothing, the gateway keeps serving afterwards, an unreachable
upstream is reported but does not take the others down, and an upstream that dies and
comes back on the same port is used again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.audit import tail, verify_chain
from gateway.recording import WITHHELD
from gateway.store import create_engine
from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import connect
from tests.support.processes import (
    REPO,
    GatewayServer,
    McpUpstreamServer,
    free_port,
    write_policy,
)
from tests.support.waiting import eventually

MAX_BODY = 4096
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
GRANTS = [
    {"role": "agent", "tool": "steady__echo"},
    {"role": "agent", "tool": "victim__*"},
    {"role": "agent", "tool": "dead__*"},
    # steady__write: no grant, so calls to it are denied by policy.
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def steady(workdir: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def victim(workdir: Path) -> Iterator[McpUpstreamServer]:
    """An upstream this module kills (and replaces) on purpose."""
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()  # nothing is ever started here


@pytest.fixture(scope="module")
def gateway(
    workdir: Path, steady: McpUpstreamServer, victim: McpUpstreamServer, dead_port: int
) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[
            {"name": "steady", "url": steady.url, "timeout_s": 5},
            {"name": "victim", "url": victim.url, "timeout_s": 5},
            {"name": "dead", "url": f"http://127.0.0.1:{dead_port}/mcp", "timeout_s": 2},
        ],
        policy=write_policy(workdir, GRANTS),
        limits={"max_body_bytes": MAX_BODY, "upstream_connect_timeout_s": 2},
    )
    server.start()
    yield server
    server.stop()


# --- helpers -----------------------------------------------------------------------------


def mcp_post(
    gateway: GatewayServer, content: Any, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        gateway.mcp_url,
        content=content,
        headers={**MCP_HEADERS, **gateway.headers(), **(headers or {})},
        timeout=10,
    )


def rest_call(
    gateway: GatewayServer, tool: str, arguments: dict[str, Any], *, token: str | None = None
) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": arguments},
        headers=gateway.headers(token),
        timeout=15,
    )


def jsonrpc(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or single-event SSE response."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def tools_call(name: str, arguments: dict[str, Any], request_id: int = 1) -> bytes:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return json.dumps(body).encode()


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    """A generator body: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def upstream_status(gateway: GatewayServer) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/readyz", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["upstreams"]


# --- malformed MCP messages --------------------------------------------------------------


def test_malformed_json_on_mcp_is_a_parse_error(gateway: GatewayServer) -> None:
    response = mcp_post(gateway, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400, response.text
    assert jsonrpc(response)["error"]["code"] == -32700


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "1.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1, "method": 42},
        [{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}],
        [],
        "tools/list",
    ],
    ids=["no-method", "wrong-version", "method-not-string", "batch", "empty-batch", "string"],
)
def test_invalid_jsonrpc_message_is_a_jsonrpc_error(gateway: GatewayServer, message: Any) -> None:
    response = mcp_post(gateway, json.dumps(message))
    assert response.status_code == 400, response.text
    error = jsonrpc(response)["error"]
    # A code of JSON-RPC's predefined range (the SDK answers -32602 where the JSON-RPC
    # spec would say -32600), with a message saying what is wrong.
    assert -32700 <= error["code"] <= -32600, error
    assert error["message"]


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        ({"Content-Type": "text/plain"}, "Content-Type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type"),
        ({"Accept": "text/html"}, "accept"),
    ],
    ids=["text-plain", "form", "accept-html"],
)
def test_wrong_content_type_on_mcp_is_refused(
    gateway: GatewayServer, steady: McpUpstreamServer, headers: dict[str, str], names: str
) -> None:
    marker = f"headers-{sorted(headers.items())}"
    response = mcp_post(gateway, tools_call("steady__echo", {"text": marker}), headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert names in response.text  # says which header is wrong
    assert marker not in json.dumps(steady.calls())


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_on_mcp_are_405(gateway: GatewayServer, method: str) -> None:
    response = httpx.request(method, gateway.mcp_url, headers=gateway.headers(), timeout=5)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"


# --- oversized bodies --------------------------------------------------------------------


def _oversized_mcp(marker: str) -> bytes:
    return tools_call("steady__echo", {"text": marker + "x" * MAX_BODY})


def _oversized_rest(marker: str) -> bytes:
    return json.dumps({"arguments": {"text": marker + "x" * MAX_BODY}}).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "build"),
    [
        ("/mcp", _oversized_mcp),
        ("/v1/tools/x/call", _oversized_rest),
        ("/v1/tools/steady__echo/call", _oversized_rest),
    ],
    ids=["mcp", "rest-unknown-tool", "rest-real-tool"],
)
def test_oversized_body_is_413(
    gateway: GatewayServer, steady: McpUpstreamServer, path: str, build: Any, chunked: bool
) -> None:
    marker = f"oversized-{path}-{chunked}"
    body = build(marker)
    assert len(body) > MAX_BODY
    response = httpx.post(
        gateway.url + path,
        content=chunks(body) if chunked else body,
        headers={**MCP_HEADERS, **gateway.headers()},
        timeout=10,
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert marker not in json.dumps(steady.calls())


# --- unknown tools ---------------------------------------------------------------------


def test_unknown_tool_is_404_on_rest_and_invalid_params_on_mcp(gateway: GatewayServer) -> None:
    response = rest_call(gateway, "steady__nope", {})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_tool"

    response = mcp_post(gateway, tools_call("steady__nope", {}))
    assert response.status_code == 200, response.text
    error = jsonrpc(response)["error"]
    assert error["code"] == -32602
    assert "unknown tool" in error["message"]


# --- the gateway keeps serving -------------------------------------------------------------


def test_gateway_serves_normally_after_bad_input(
    gateway: GatewayServer, steady: McpUpstreamServer
) -> None:
    big = b"x" * (MAX_BODY * 4)
    for _ in range(3):  # a burst of everything above, then a normal call
        mcp_post(gateway, b"{not json")
        mcp_post(gateway, b'{"jsonrpc":"2.0","id":1}')
        mcp_post(gateway, b"[]")
        mcp_post(gateway, big)
        mcp_post(gateway, chunks(big))
        mcp_post(gateway, b"{}", headers={"Content-Type": "text/plain"})
        httpx.get(gateway.mcp_url, headers=gateway.headers(), timeout=5)
        httpx.post(gateway.url + "/v1/tools/x/call", content=chunks(big), timeout=5)
        rest_call(gateway, "nope__nope", {})
    assert gateway.process is not None and gateway.process.popen.poll() is None

    response = rest_call(gateway, "steady__echo", {"text": "still serving"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"][0]["text"] == "still serving"
    response = mcp_post(gateway, tools_call("steady__echo", {"text": "still serving mcp"}))
    assert jsonrpc(response)["result"]["content"][0]["text"] == "still serving mcp"
    assert {"text": "still serving mcp"} in [c["arguments"] for c in steady.calls()]


# --- audit of refusals -------------------------------------------------------------------


def test_refused_calls_with_a_known_principal_are_audited(gateway: GatewayServer) -> None:
    token = gateway.token(sub="agent:audited")
    unknown = rest_call(gateway, "steady__nope", {}, token=token)
    invalid = rest_call(gateway, "steady__echo", {"text": 7}, token=token)
    denied = rest_call(gateway, "steady__write", {"key": "k", "value": "v"}, token=token)
    assert [r.status_code for r in (unknown, invalid, denied)] == [404, 400, 403]
    on_mcp = mcp_post(
        gateway,
        tools_call("steady__write", {"key": "k", "value": "v"}),
        headers={"Authorization": f"Bearer {token}"},
    )
    mcp_meta = jsonrpc(on_mcp)["result"]["_meta"][META_KEY]
    assert mcp_meta["status"] == "denied"

    # Refused before a principal existed, or before the body could be read: not audited.
    unauthenticated = httpx.post(gateway.url + "/v1/tools/steady__echo/call", json={}, timeout=5)
    oversized = mcp_post(gateway, b"x" * (MAX_BODY + 1))
    assert (unauthenticated.status_code, oversized.status_code) == (401, 413)

    engine = create_engine(gateway.config["storage"]["url"])
    try:
        refused = [r.json()["request_id"] for r in (unknown, invalid, denied)]
        for request_id in [*refused, mcp_meta["request_id"]]:
            entries = tail(engine, 10, ref=request_id)
            assert [e.kind for e in entries] == ["call.attempt", "call.decision"], request_id
            attempt, decided = (e.payload for e in entries)
            assert attempt is not None and decided is not None
            assert attempt["principal"]["sub"] == "agent:audited"
            assert decided["decision"]["allow"] is False
        for response in (unauthenticated, oversized):
            assert tail(engine, 10, ref=response.headers["x-request-id"]) == []
        verify_chain(tail(engine, 100_000), gateway.config["audit"]["origin"])
    finally:
        engine.dispose()


# --- unreachable and dying upstreams ---------------------------------------------------------


def test_unreachable_upstream_is_reported_and_the_others_still_work(
    gateway: GatewayServer, steady: McpUpstreamServer
) -> None:
    ready = httpx.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text  # one dead upstream is not "not ready"
    upstreams = ready.json()["upstreams"]
    assert upstreams["dead"]["connected"] is False
    assert upstreams["dead"]["detail"]
    assert upstreams["steady"]["connected"] is True

    listing = httpx.get(gateway.url + "/v1/tools", headers=gateway.headers(), timeout=10)
    names = {t["name"] for t in listing.json()["tools"]}
    assert "steady__echo" in names
    assert not any(n.startswith("dead__") for n in names)

    response = rest_call(gateway, "steady__echo", {"text": "beside the dead"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"][0]["text"] == "beside the dead"
    assert rest_call(gateway, "dead__echo", {"text": "x"}).status_code == 404


def test_gateway_tools_command_omits_the_unreachable_upstream(gateway: GatewayServer) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "tools", "--json", "--config", str(gateway.config_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    names = {t["name"] for t in json.loads(completed.stdout)["tools"]}
    assert {"steady__echo", "steady__write"} <= names
    assert not any(n.startswith("dead__") for n in names)
    assert "upstream dead is not reachable" in completed.stderr


@pytest.mark.anyio
async def test_killed_upstream_fails_clearly_and_is_reconnected(
    gateway: GatewayServer, victim: McpUpstreamServer, workdir: Path
) -> None:
    assert rest_call(gateway, "victim__echo", {"text": "before"}).status_code == 200
    victim.process.kill()

    # Over MCP: an isError result naming the upstream failure (a refused connection,
    # not a call that waited for its timeout).
    async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
        result = await client.call_tool("victim__echo", {"text": "while dead"})
    assert result.is_error
    error = result.meta[META_KEY]["error"]
    assert error["code"] in ("upstream_unavailable", "upstream_error"), error
    assert "victim" in error["message"]

    # Over REST: 502 with the same code.
    response = rest_call(gateway, "victim__echo", {"text": "while dead"})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] in ("upstream_unavailable", "upstream_error")
    eventually(
        lambda: upstream_status(gateway)["victim"]["connected"] is False, "victim disconnected"
    )

    revived = McpUpstreamServer.start(workdir, port=victim.port)
    try:

        def answered() -> bool:
            response = rest_call(gateway, "victim__echo", {"text": "after"})
            return response.status_code == 200 and response.json()["status"] == "ok"

        eventually(
            answered,
            "the revived upstream answers",
            interval_s=0.5,
            detail=lambda: gateway.log()[-3000:],
        )
        assert upstream_status(gateway)["victim"]["connected"] is True
        async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
            result = await client.call_tool("victim__echo", {"text": "after, over mcp"})
        assert not result.is_error and result.content[0].text == "after, over mcp"
        served_by = {
            c["pid"] for c in revived.calls() if c["arguments"]["text"].startswith("after")
        }
        assert served_by == {revived.process.popen.pid}
    finally:
        revived.process.stop()


def test_deeply_nested_json_is_a_clear_400_on_both_surfaces(gateway: GatewayServer) -> None:
    deep = b"[" * 2000 + b"]" * 2000  # far below the body limit, beyond the parser's depth
    rest = httpx.post(
        f"{gateway.url}/v1/tools/steady__echo/call",
        headers={**gateway.headers(), "Content-Type": "application/json"},
        content=b'{"arguments": {"text": ' + deep + b"}}",
        timeout=10,
    )
    assert rest.status_code == 400, rest.text
    assert "nested too deeply" in rest.json()["error"]["message"]
    mcp = mcp_post(
        gateway, b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": ' + deep + b"}"
    )
    assert mcp.status_code == 400, mcp.text
    assert jsonrpc(mcp)["error"]["code"] == -32700


def test_arguments_nested_too_deeply_are_refused_and_audited_without_them(
    gateway: GatewayServer,
) -> None:
    # 400 levels: inside the body limit and readable as JSON, but deeper than every
    # recursive reader of arguments (schema, canonical form, redaction, Rego) can go.
    deep: Any = "x"
    for _ in range(400):
        deep = [deep]
    token = gateway.token(sub="agent:deep")
    rest = rest_call(gateway, "steady__echo", {"text": deep}, token=token)
    assert rest.status_code == 400, rest.text
    assert rest.json()["error"]["code"] == "invalid_arguments"
    assert "nested more than 64 levels" in rest.json()["error"]["message"]
    # On MCP the SDK's JSON reader stops at about 200 levels (a parse error, nothing
    # read); between 64 and that, the pipeline refuses the call like REST does.
    unreadable = mcp_post(
        gateway,
        tools_call("steady__echo", {"text": deep}),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert jsonrpc(unreadable)["error"]["code"] == -32700
    less_deep: Any = "x"
    for _ in range(100):
        less_deep = [less_deep]
    mcp = mcp_post(
        gateway,
        tools_call("steady__echo", {"text": less_deep}),
        headers={"Authorization": f"Bearer {token}"},
    )
    result = jsonrpc(mcp)["result"]
    assert result["isError"] is True
    assert "nested more than 64 levels" in result["content"][0]["text"]
    assert rest_call(gateway, "steady__echo", {"text": "fine"}, token=token).status_code == 200

    engine = create_engine(gateway.config["storage"]["url"])
    try:
        attempt, decided = (e.payload for e in tail(engine, 10, ref=rest.json()["request_id"]))
        assert attempt is not None and decided is not None
        # Refused before policy: no decision said what to redact (gateway.recording).
        assert attempt["arguments"] == WITHHELD
        assert attempt["arguments_sha256"] is None
        assert decided["decision"]["allow"] is False
        assert "nested more than 64 levels" in decided["decision"]["reasons"][0]
        verify_chain(tail(engine, 100_000), gateway.config["audit"]["origin"])
    finally:
        engine.dispose()
