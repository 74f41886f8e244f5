"""The clients docs/agents.md shows, run as documented against the e2e gateway
(tests/e2e/conftest.py) where they run without an LLM:

- the TypeScript SDK v1 and v2 examples (docs/examples/agents/typescript_v*.mjs), as
  a user's copy of each file runs;
- the MCP Inspector's command line: the block of docs/agents.md itself, with the
  Inspector tests/peers installed in place of ``npx`` (which would download it);
- the OpenAI Agents SDK's MCP read timeout: with its default of 5 s a call held for
  approval fails; with the setting the example makes, the agent gets the answer;
- a desktop client's config for ``mcp-remote`` (the doc's JSON block), started as a
  desktop client starts it, with the mcp-remote tests/peers installs.

pydantic-ai, the Agents SDK's tools and LangChain run their examples in
test_agent_framework.py and test_mcp_clients.py; docs/agents.md embeds every example
file, and the doc test checks each block is the file byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_examples import load, runnable_node_example
from tests.support.conformance import NODE, PEERS
from tests.support.doc_snippets import blocks_of
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer, write_policy

pytestmark = pytest.mark.anyio

INSPECTOR = PEERS / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
DOC = REPO / "docs" / "agents.md"
DOC_URL = "http://127.0.0.1:8080"


def _node(script: Path, *args: str, token: str) -> list[str]:
    done = subprocess.run(
        [str(NODE), str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_TOKEN": token},
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout.splitlines()


@pytest.mark.parametrize("example", ["typescript_v1.mjs", "typescript_v2.mjs"])
def test_the_typescript_examples_list_and_call_tools(
    example: str, gateway: GatewayServer, mcp_upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    script = runnable_node_example(example, tmp_path)
    text = f"from {example}"
    tools, result = _node(
        script,
        gateway.mcp_url,
        "up__echo",
        json.dumps({"text": text}),
        token=gateway.token(sub="agent:ts-example"),
    )
    assert "up__echo" in tools.split() and "up__write" not in tools.split()
    assert json.loads(result)["content"][0]["text"] == text
    assert {"text": text} in [c["arguments"] for c in mcp_upstream.calls()]


def _inspector_block() -> str:
    [block] = [b for b in blocks_of(DOC, REPO) if "inspector --cli" in b.text]
    return block.text


def test_the_inspector_command_line_of_the_doc_lists_and_calls_tools(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    script = _inspector_block().replace(
        "npx @modelcontextprotocol/inspector", f"{NODE} {INSPECTOR / 'index.js'}"
    )
    script = script.replace(DOC_URL, gateway.url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "GATEWAY_TOKEN": gateway.token(sub="agent:inspector-doc"),
        },
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    listed, called = _json_documents(done.stdout)
    names = [t["name"] for t in listed["tools"]]
    assert "up__echo" in names and "up__write" not in names
    assert called["content"][0]["text"] == "hello"
    assert {"text": "hello"} in [c["arguments"] for c in mcp_upstream.calls()]


def _json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (pretty-printed, as the Inspector does)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


HOLD_S = 7  # past the Agents SDK's default read timeout of 5 s


@pytest.fixture(scope="module")
def held_gateway(workdir: Path, mcp_upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    """Every call to up__echo needs an approval, and is held HOLD_S for one."""
    grants = [{"role": "agent", "tool": "up__echo", "approval": {"approvers": ["role:approver"]}}]
    server = GatewayServer.configure(
        workdir / "held-gateway",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy=write_policy(workdir / "held-policy", grants),
    )
    server.config["approvals"] = {"hold_s": HOLD_S}
    server.start()
    yield server
    server.stop()


async def test_the_agents_sdk_needs_the_documented_timeout_for_a_held_call(
    held_gateway: GatewayServer,
) -> None:
    from agents.mcp import MCPServerStreamableHttp

    token = held_gateway.token(sub="agent:openai-agents-held")
    default = MCPServerStreamableHttp(
        {"url": held_gateway.mcp_url, "headers": {"Authorization": f"Bearer {token}"}},
        name="gateway",
    )
    async with default:
        # Times out after 5 s, before the gateway answers at the end of the hold.
        with pytest.raises(Exception, match=r"(?i)timed out|timeout"):
            await default.call_tool("up__echo", {"text": "held, default timeout"})

    documented = load("openai_agents_agent")
    assert documented.APPROVAL_HOLD_S >= HOLD_S
    async with documented.gateway_server(held_gateway.mcp_url, token) as server:
        result = await server.call_tool("up__echo", {"text": "held, documented timeout"})
    # The hold ran out: the agent hears it is pending, with the approval to wait for.
    assert result.is_error
    assert result.meta["io.agentgateway/decision"]["status"] == "pending_approval"
    assert result.meta["io.agentgateway/decision"]["approval_id"].startswith("apr_")


def _desktop_config() -> dict[str, Any]:
    [block] = [b for b in blocks_of(DOC, REPO) if b.lang == "json" and "mcp-remote" in b.text]
    config: dict[str, Any] = json.loads(block.text)["mcpServers"]["gateway"]
    return config


async def test_a_desktop_client_reaches_the_gateway_through_mcp_remote_as_configured(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    """The doc's desktop config, started as a desktop client starts it (a stdio MCP
    server), with the mcp-remote tests/peers installs in place of ``npx``."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    config = _desktop_config()
    assert config["command"] == "npx" and config["args"][0] == "mcp-remote"
    args = [a.replace(DOC_URL, gateway.url) for a in config["args"][1:]]
    env = {
        name: value.replace("<token>", gateway.token(sub="agent:desktop"))
        for name, value in config["env"].items()
    }
    server = StdioServerParameters(
        command=str(NODE),
        args=[str(PEERS / "mcp-remote" / "dist" / "proxy.js"), *args],
        # mcp-remote keeps its state under ~/.mcp-auth.
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
    )
    with (tmp_path / "mcp-remote.log").open("w") as errors:
        async with Client(stdio_client(server, errlog=errors), mode="legacy") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert "up__echo" in names and "up__write" not in names
            result = await client.call_tool("up__echo", {"text": "from a desktop client"})
    assert result.content[0].text == "from a desktop client"
    assert {"text": "from a desktop client"} in [c["arguments"] for c in mcp_upstream.calls()]
