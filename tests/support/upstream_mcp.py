"""A test upstream MCP server that records every call it receives.

    python -m tests.support.upstream_mcp http PORT CALL_LOG
    python -m tests.support.upstream_mcp stdio CALL_LOG

Each tools/call appends one JSON line to CALL_LOG (tool, arguments, the Authorization
header it saw, the request `_meta`), so tests can prove what reached the upstream and
what did not.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations

server = MCPServer("test-upstream", version="1.0.0")
CALL_LOG = Path(os.environ.get("TEST_UPSTREAM_CALL_LOG", "/dev/null"))


def _record(ctx: Context, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    headers = ctx.headers or {}
    raw_meta: Any = ctx.request_context.meta or {}
    meta = raw_meta if isinstance(raw_meta, dict) else raw_meta.model_dump(by_alias=True)
    entry = {
        "tool": tool,
        "arguments": arguments,
        "authorization": headers.get("authorization"),
        "meta": meta,
        "pid": os.getpid(),
    }
    with CALL_LOG.open("a") as log:
        log.write(json.dumps(entry) + "\n")
    return entry


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str, ctx: Context) -> str:
    """Returns the text."""
    _record(ctx, "echo", {"text": text})
    return text


@server.tool(annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False))
def write(key: str, value: str, ctx: Context) -> str:
    """Pretends to write a value (destructive)."""
    _record(ctx, "write", {"key": key, "value": value})
    return f"wrote {key}"


@server.tool()
def login(user: str, api_key: str, ctx: Context) -> str:
    """Takes a secret argument, which the audit log must never hold."""
    _record(ctx, "login", {"user": user, "api_key": api_key})
    return f"welcome {user}"


@server.tool()
def whoami(ctx: Context) -> dict[str, Any]:
    """Reports the credential and metadata the upstream received."""
    return _record(ctx, "whoami", {})


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleeps, reporting progress every 0.1 s."""
    _record(ctx, "slow", {"seconds": seconds})
    steps = max(1, round(seconds / 0.1))
    for step in range(steps):
        await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        await anyio.sleep(seconds / steps)
    return "done"


@server.tool()
def fail(ctx: Context) -> str:
    """Always fails as a tool (isError)."""
    _record(ctx, "fail", {})
    raise ToolError("the tool failed on purpose")


@server.tool()
def with_meta(ctx: Context) -> CallToolResult:
    """Returns a result carrying upstream `_meta`, which the gateway must drop."""
    _record(ctx, "with_meta", {})
    return CallToolResult(
        content=[TextContent(text="has meta", _meta={"upstream/secret": "content-level"})],
        structured_content={"ok": True},
        _meta={"upstream/secret": "result-level"},
    )


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "stdio":
        CALL_LOG = Path(sys.argv[2])
        server.run("stdio")
    else:
        CALL_LOG = Path(sys.argv[3])
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            streamable_http_path="/mcp",
            stateless_http=True,
        )
