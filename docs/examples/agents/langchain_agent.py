"""LangChain tools from the gateway, with langchain-mcp-adapters.

GATEWAY_TOKEN=<jwt> python langchain_agent.py http://127.0.0.1:8080/mcp
"""

import asyncio
import os
import sys

from langchain_mcp_adapters.client import MultiServerMCPClient


def gateway_client(url: str, token: str) -> MultiServerMCPClient:
    return MultiServerMCPClient(
        {
            "gateway": {
                "transport": "streamable_http",
                "url": url,
                "headers": {"Authorization": f"Bearer {token}"},
            }
        }
    )


async def main(url: str, token: str) -> None:
    tools = await gateway_client(url, token).get_tools()
    # Hand `tools` to any LangChain agent, e.g. create_agent("openai:gpt-5", tools).
    echo = next(t for t in tools if t.name == "demo__echo")
    print(await echo.ainvoke({"text": "hello"}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], os.environ["GATEWAY_TOKEN"]))
