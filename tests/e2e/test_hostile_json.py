"""Hostile JSON against a running gateway: numbers JSON text can carry that no double
represents, NaN and infinities, lone surrogates, deep nesting, in tool arguments
(REST and both MCP paths) and run inputs. Each is refused with a clear 4xx naming
where, audited where a principal is known, and every reader of the log (explorer,
search, export, verify, replay) reads every entry written afterwards. The exact
doubles the issue found poisoning the log (1e17) are accepted and read back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from gateway.audit import tail
from gateway.recording import WITHHELD
from gateway.store import create_engine
from gateway.surfaces.mcp import META_KEY
from tests.support.documents import objects
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer, write_policy

GRANTS = [{"role": "agent", "tool": "up__echo"}]
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "up__echo"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "hostile", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    workdir = tmp_path_factory.mktemp("hostile")
    upstream = McpUpstreamServer.start(workdir)
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(workdir, GRANTS),
    )
    server.start()
    yield server
    server.stop()
    upstream.process.stop()


def raw(value: Any) -> str:
    """JSON text as a hostile client writes it: NaN and Infinity as literals, lone
    surrogates as escapes, integers of any size as digits."""
    return json.dumps(value, allow_nan=True)


def rest(gateway: GatewayServer, arguments_text: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/up__echo/call",
        content='{"arguments": ' + arguments_text + "}",
        headers={**gateway.headers(), "Content-Type": "application/json"},
        timeout=30,
    )


def mcp(gateway: GatewayServer, arguments_text: str, *, modern: bool) -> httpx.Response:
    meta = ', "_meta": ' + json.dumps(ENVELOPE) if modern else ""
    body = (
        '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": '
        '{"name": "up__echo", "arguments": ' + arguments_text + meta + "}}"
    )
    headers = {**MCP_HEADERS, **gateway.headers()}
    headers.update(MODERN if modern else {"MCP-Protocol-Version": "2025-11-25"})
    return httpx.post(gateway.mcp_url, content=body, headers=headers, timeout=30)


def message(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # SSE lines end at CR or LF only (str.splitlines would also cut at U+2028).
        lines = re.split(r"\r\n|\r|\n", response.text)
        data = [line[5:] for line in lines if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def submit(gateway: GatewayServer, inputs_text: str) -> httpx.Response:
    plan = {"steps": [{"id": "a", "tool": "up__echo", "arguments": {"text": "x"}}]}
    return httpx.post(
        f"{gateway.url}/v1/runs",
        content='{"plan": ' + json.dumps(plan) + ', "inputs": ' + inputs_text + "}",
        headers={**gateway.headers(), "Content-Type": "application/json"},
        timeout=30,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def entries(gateway: GatewayServer, ref: str) -> list[tuple[str, dict[str, Any] | None]]:
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        return [(e.kind, e.payload) for e in tail(engine, 20, ref=ref)]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"text": "x", "n": 9007199254740993}', "not exactly representable"),
        ('{"text": "x", "n": 1e400}', "finite doubles only"),
        ('{"text": "x", "n": NaN}', "finite doubles only"),
        ('{"text": "x", "n": -Infinity}', "finite doubles only"),
        ('{"text": "x", "n": "\\ud800"}', "lone surrogate"),
    ],
    ids=["inexact-integer", "overflow", "nan", "infinity", "lone-surrogate"],
)
def test_values_outside_i_json_are_refused_naming_where_and_audited(
    gateway: GatewayServer, text: str, reason: str
) -> None:
    refused = rest(gateway, text)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["status"] == "denied"
    assert body["error"]["code"] == "invalid_arguments"
    assert body["error"]["details"]["pointer"] == "/n"
    assert reason in body["error"]["message"]
    recorded = dict(entries(gateway, body["request_id"]))
    assert recorded["call.attempt"] is not None
    assert recorded["call.attempt"]["arguments"] == WITHHELD
    assert recorded["call.decision"] is not None
    assert recorded["call.decision"]["decision"]["allow"] is False

    eras = (True, False)
    if "ud800" in text:
        # At 2025-11-25 the MCP SDK's JSON reader refuses the text itself: a parse
        # error before any call exists. At 2026-07-28 it reads it, and the gateway
        # refuses the call like REST does.
        assert message(mcp(gateway, text, modern=False))["error"]["code"] == -32700
        eras = (True,)
    for modern in eras:
        answer = message(mcp(gateway, text, modern=modern))
        result = answer["result"]
        assert result["isError"] is True
        assert result["_meta"][META_KEY]["error"]["code"] == "invalid_arguments"
        assert reason in result["content"][0]["text"]
    if "ud800" in text:
        return  # the runs API reads JSON as REST does: covered by the cases above

    inputs = submit(gateway, text)
    assert inputs.status_code == 400, inputs.text
    assert inputs.json()["error"]["code"] == "inputs_invalid"
    assert inputs.json()["error"]["details"]["pointer"] == "/n"
    [(kind, payload)] = entries(gateway, inputs.json()["request_id"])
    assert kind == "run.refused" and payload is not None
    assert payload["inputs"] == WITHHELD


def test_an_exact_double_is_accepted_and_every_reader_reads_it(gateway: GatewayServer) -> None:
    for text in ('{"text": "x", "n": 1e17}', '{"text": "x", "n": 100000000000000000}'):
        assert rest(gateway, text).status_code == 200
        answer = message(mcp(gateway, text, modern=True))
        assert answer["result"]["isError"] is False
    auditor = gateway.headers(sub="user:audrey", roles=("auditor",))
    listed = httpx.get(gateway.url + "/v1/audit/entries", headers=auditor, timeout=30)
    assert listed.status_code == 200, listed.text
    for entry in listed.json()["entries"]:
        one = httpx.get(gateway.url + f"/v1/audit/entries/{entry['seq']}", headers=auditor)
        assert one.status_code == 200, one.text
        assert one.json()["verification"]["status"] != "failed", one.text
    config = ("--config", str(gateway.config_path))
    assert cli("audit", "search", "--kind", "call.attempt", *config).returncode == 0


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arguments=objects())
def test_no_document_makes_the_gateway_fail(gateway: GatewayServer, arguments: Any) -> None:
    text = raw(arguments)
    assert rest(gateway, text).status_code < 500
    for modern in (True, False):
        answer = mcp(gateway, text, modern=modern)
        assert answer.status_code < 500
        assert message(answer).get("error", {}).get("code") != -32603, answer.text
    assert submit(gateway, text).status_code < 500


def test_every_reader_reads_every_entry_written(gateway: GatewayServer, tmp_path: Path) -> None:
    # Runs after the tests above (file order): the log holds all they wrote.
    auditor = gateway.headers(sub="user:audrey", roles=("auditor",))
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            gateway.url + "/v1/audit/entries", params=params, headers=auditor, timeout=60
        )
        assert page.status_code == 200, page.text
        assert all(e["verification"]["status"] != "failed" for e in page.json()["entries"])
        pages += 1
        cursor = page.json().get("next_cursor")
        if not cursor:
            break
    assert pages >= 1
    config = ("--config", str(gateway.config_path))
    for command in (
        ("audit", "tail", "-n", "100000", *config),
        ("audit", "search", "--limit", "100000", *config),
        ("audit", "verify", "--db", gateway.config["storage"]["url"]),
        ("audit", "export", "--out", str(tmp_path / "export"), *config),
        ("policy", "replay", "--policy", gateway.config["policy"]["path"], *config),
    ):
        done = cli(*command)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    verified = cli("audit", "verify", str(tmp_path / "export"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
