"""What writing a ``tools/list`` of N tools costs in the MCP SDK's own path, in-process.

A bare lowlevel `Server` of the SDK (no gateway: no authentication, no policy, no
audit) answers ``tools/list`` over its stateless Streamable HTTP app, driven through
httpx's ASGI transport, in two ways:

- ``rebuilt``: as the gateway's handler did before docs/decisions/0033 — a
  `types.Tool` model per tool and a `types.ListToolsResult`, on every list;
- ``built once``: the gateway's `McpLists` — entries built once per definition, a
  result dict the runner takes as it is.

Reported: the process's CPU per list (client side included; its share is small, the
response is not parsed). What ``built once`` leaves is the SDK's serializer for the
revision, its transport's dump of the envelope and ``json.dumps``.

    .venv/bin/python -m bench.list_serialization [--tools 1000] [--lists 20]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import httpx
import mcp_types as types
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.lowlevel import Server

from bench.proc_cpu import load_average
from gateway.surfaces.mcp_lists import McpLists, mcp_tool
from gateway.surfaces.mcp_views import View
from gateway.types import ToolDefinition

ERA = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": ERA,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def definitions(count: int) -> list[ToolDefinition]:
    """Tools shaped like bench/catalog_upstream.py's fillers."""
    schema = {
        "type": "object",
        "properties": {
            "query": {"description": "What to look up", "maxLength": 200, "type": "string"}
        },
        "required": ["query"],
    }
    return [
        ToolDefinition(
            name=f"up__tool_{i:04d}",
            server="up",
            upstream_tool=f"tool_{i:04d}",
            description=f"Looks up record {i} of the bench catalog and returns it as text.",
            input_schema=schema,
            output_schema=None,
            annotations={"readOnlyHint": True},
            risk="low",
            definition_hash=f"{i:064d}",
        )
        for i in range(count)
    ]


def server(tools: list[ToolDefinition], way: str) -> Server[Any]:
    catalog: Any = type("Catalog", (), {"tools": lambda self: tools})()
    lists = McpLists(catalog)

    async def list_tools(ctx: Any, params: Any) -> Any:
        if way == "rebuilt":
            return types.ListToolsResult(
                tools=[
                    types.Tool.model_validate(mcp_tool(t, View(), task_support=False))
                    for t in tools
                ]
            )
        return lists.tools(tools, View(), ctx.protocol_version, tasks=False).result

    hints = {method: CacheHint(ttl_ms=0, scope="private") for method in CACHEABLE_METHODS}
    app: Server[Any] = Server("bench", cache_hints=hints)
    app.add_request_handler("tools/list", types.PaginatedRequestParams, list_tools)
    return app


async def cpu_per_list(tools: list[ToolDefinition], way: str, lists: int) -> float:
    app = server(tools, way).streamable_http_app(stateless_http=True, json_response=True)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
    headers = {
        "MCP-Protocol-Version": ERA,
        "Mcp-Method": "tools/list",
        "Accept": "application/json, text/event-stream",
    }
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client,
    ):
        for _ in range(3):  # warm up (and build the entries once)
            response = await client.post("/mcp", headers=headers, json=body)
            assert response.status_code == 200, response.text[:300]
            assert len(response.json()["result"]["tools"]) == len(tools)
        started = time.process_time()
        for _ in range(lists):
            await client.post("/mcp", headers=headers, json=body)
        return (time.process_time() - started) * 1000 / lists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", type=int, default=1000)
    parser.add_argument("--lists", type=int, default=20)
    args = parser.parse_args()
    tools = definitions(args.tools)
    print(f"load average {load_average()[0]}; {args.tools} tools, {ERA}")
    for way in ("rebuilt", "built once"):
        cpu = anyio.run(cpu_per_list, tools, way, args.lists)
        print(f"{way}: {cpu:.1f} ms of CPU per list")


if __name__ == "__main__":
    main()
