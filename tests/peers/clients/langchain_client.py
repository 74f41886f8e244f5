"""Lists the gateway's tools and calls one with langchain-mcp-adapters, for
tests/e2e/test_mcp_clients.py; runs in tests/peers/langchain/.venv (mcp<2). The client
is the one docs/agents.md shows (docs/examples/agents/langchain_agent.py).

    MCP_TOKEN=<jwt> python langchain_client.py URL TOOL ARGUMENTS_JSON

Prints one JSON line: {"tools": [...], "result": <what the LangChain tool returned>}.
The tool object is invoked directly, as an agent would, without a model.
"""

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "docs" / "examples" / "agents"))
from langchain_agent import gateway_client


async def main(url: str, tool: str, arguments: dict) -> None:
    tools = await gateway_client(url, os.environ["MCP_TOKEN"]).get_tools()
    [chosen] = [t for t in tools if t.name == tool]
    try:
        result = await chosen.ainvoke(arguments)
        error = None
    except Exception as exc:  # a tool error surfaces as an exception (ToolException)
        result, error = None, f"{type(exc).__name__}: {exc}"
    print(
        json.dumps(
            {"tools": [t.name for t in tools], "result": result, "error": error}, default=str
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
