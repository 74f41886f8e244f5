"""An upstream MCP server with a catalog of any size: ``echo`` and N − 1 filler tools.

    .venv/bin/python -m bench.catalog_upstream PORT TOOLS

Stateless Streamable HTTP on 127.0.0.1, like the recording test server. The filler
tools have a description and a one-argument schema of a realistic size, so that a
catalog of 1,000 is what a large upstream would list.
"""

from __future__ import annotations

import sys
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field


def build(tools: int) -> MCPServer:
    server = MCPServer("bench-catalog", version="1.0.0")

    def echo(text: str) -> str:
        """Returns the text."""
        return text

    server.add_tool(echo, annotations=ToolAnnotations(read_only_hint=True))
    for index in range(1, tools):

        def filler(
            query: Annotated[str, Field(description="What to look up", max_length=200)],
        ) -> str:
            return query

        server.add_tool(
            filler,
            name=f"tool_{index:04d}",
            description=f"Looks up record {index} of the bench catalog and returns it as text.",
            annotations=ToolAnnotations(read_only_hint=True),
        )
    return server


if __name__ == "__main__":
    port, count = int(sys.argv[1]), int(sys.argv[2])
    build(count).run(
        "streamable-http",
        host="127.0.0.1",
        port=port,
        streamable_http_path="/mcp",
        stateless_http=True,
    )
