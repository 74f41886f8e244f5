"""Clients that work with the gateway today for tools must keep working (issue 12): each
lists the tools (filtered by policy), calls one, and sees a policy denial as a tool
error, through the aggregated ``/mcp`` of the e2e gateway (tests/e2e/conftest.py).

- the TypeScript SDK v1 (``@modelcontextprotocol/sdk``, 2025-11-25) and v2
  (``@modelcontextprotocol/client``, both eras): tests/peers/clients/ts_tools_client.mjs;
- the MCP Inspector's command line (``inspector --cli``);
- the OpenAI Agents SDK's MCP client (``agents.mcp.MCPServerStreamableHttp``), its
  tool objects called directly, without a model; the server object is the one
  docs/agents.md shows (docs/examples/agents/openai_agents_agent.py);
- ``langchain-mcp-adapters`` (``MultiServerMCPClient``, its LangChain tools invoked
  directly): tests/peers/clients/langchain_client.py, in its own environment
  (tests/peers/langchain, installed by ``make peers``), since its releases require
  ``mcp<2`` and the gateway ``mcp>=2.3``; its client is docs/agents.md's too.

The documented examples themselves (the TypeScript ones, the Inspector's command
line, the Agents SDK's timeout) run in test_agents_doc.py.

Elsewhere: pydantic-ai in test_agent_framework.py; raw 2026-07-28 requests in
test_mcp_surface.py and test_mcp_direct_path.py; the Python SDK client throughout.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_examples import load
from tests.support.conformance import NODE, PEERS
from tests.support.peers import run_node_client
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer, read_calls

pytestmark = pytest.mark.anyio

LANGCHAIN_PYTHON = REPO / "tests" / "peers" / "langchain" / ".venv" / "bin" / "python"
LANGCHAIN_CLIENT = REPO / "tests" / "peers" / "clients" / "langchain_client.py"
INSPECTOR = PEERS / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
# local__echo allows at most 20 characters of text (tests/e2e/conftest.py): a denial.
DENIED = ("local__echo", {"text": "x" * 30})


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result.get("content", []))


def ts_client(sdk: str, gateway: GatewayServer, era: str, tool: str, args: dict[str, Any]) -> Any:
    [line] = run_node_client(
        "ts_tools_client.mjs",
        [sdk, gateway.mcp_url, era, tool, json.dumps(args)],
        env={"MCP_TOKEN": gateway.token(sub=f"agent:ts-{sdk}")},
    )
    return line


@pytest.mark.parametrize(("sdk", "era"), [("v1", "legacy"), ("v2", "legacy"), ("v2", "2026-07-28")])
def test_the_typescript_sdk_lists_and_calls_tools(
    sdk: str, era: str, gateway: GatewayServer, mcp_upstream: McpUpstreamServer
) -> None:
    seen = ts_client(sdk, gateway, era, "up__echo", {"text": f"from ts {sdk} {era}"})
    assert "up__echo" in seen["tools"] and "up__write" not in seen["tools"]
    assert text_of(seen["result"]) == f"from ts {sdk} {era}"
    assert {"text": f"from ts {sdk} {era}"} in [c["arguments"] for c in mcp_upstream.calls()]
    if sdk == "v2":
        assert seen["era"] == ("2025-11-25" if era == "legacy" else era)


@pytest.mark.parametrize(("sdk", "era"), [("v1", "legacy"), ("v2", "legacy"), ("v2", "2026-07-28")])
def test_the_typescript_sdk_sees_a_denial_as_a_tool_error(
    sdk: str, era: str, gateway: GatewayServer, stdio_call_log: Path
) -> None:
    before = len(read_calls(stdio_call_log))
    seen = ts_client(sdk, gateway, era, *DENIED)
    assert seen["result"]["isError"] is True
    assert "was not executed" in text_of(seen["result"])
    assert seen["result"]["_meta"]["io.agentgateway/decision"]["status"] == "denied"
    assert len(read_calls(stdio_call_log)) == before


def inspector(gateway: GatewayServer, home: Path, *args: str) -> Any:
    """``inspector --cli <gateway>/mcp --transport http --header ... ARGS``, as a user runs it."""
    done = subprocess.run(
        [
            str(NODE),
            str(INSPECTOR / "index.js"),
            "--cli",
            gateway.mcp_url,
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {gateway.token(sub='agent:inspector')}",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout)


def test_the_inspector_cli_lists_and_calls_tools(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    listed = inspector(gateway, tmp_path, "--method", "tools/list")
    names = [t["name"] for t in listed["tools"]]
    assert "up__echo" in names and "up__write" not in names

    called = inspector(
        gateway,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "up__echo",
        "--tool-arg",
        "text=from the inspector",
    )
    assert text_of(called) == "from the inspector"
    assert {"text": "from the inspector"} in [c["arguments"] for c in mcp_upstream.calls()]


async def test_openai_agents_lists_and_calls_tools(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, stdio_call_log: Path
) -> None:
    # With the read timeout docs/agents.md sets: the SDK's default, 5 s, is shorter
    # than a call held for approval (test_agents_doc.py).
    server = load("openai_agents_agent").gateway_server(
        gateway.mcp_url, gateway.token(sub="agent:openai-agents")
    )
    async with server:
        names = [t.name for t in await server.list_tools()]
        assert "up__echo" in names and "up__write" not in names

        result = await server.call_tool("up__echo", {"text": "from openai-agents"})
        assert [c.text for c in result.content] == ["from openai-agents"]
        assert {"text": "from openai-agents"} in [c["arguments"] for c in mcp_upstream.calls()]

        before = len(read_calls(stdio_call_log))
        denied = await server.call_tool(*DENIED)
        assert denied.is_error and "was not executed" in denied.content[0].text
        assert len(read_calls(stdio_call_log)) == before


def langchain(gateway: GatewayServer, tool: str, arguments: dict[str, Any]) -> Any:
    done = subprocess.run(
        [
            str(LANGCHAIN_PYTHON),
            str(LANGCHAIN_CLIENT),
            gateway.mcp_url,
            tool,
            json.dumps(arguments),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "MCP_TOKEN": gateway.token(sub="agent:langchain")},
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout.splitlines()[-1])


def test_langchain_mcp_adapters_lists_and_calls_tools(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, stdio_call_log: Path
) -> None:
    seen = langchain(gateway, "up__echo", {"text": "from langchain"})
    assert "up__echo" in seen["tools"] and "up__write" not in seen["tools"]
    assert seen["error"] is None and "from langchain" in json.dumps(seen["result"])
    assert {"text": "from langchain"} in [c["arguments"] for c in mcp_upstream.calls()]

    before = len(read_calls(stdio_call_log))
    denied = langchain(gateway, *DENIED)
    assert "was not executed" in json.dumps([denied["result"], denied["error"]])
    assert len(read_calls(stdio_call_log)) == before
