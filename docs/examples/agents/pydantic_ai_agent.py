"""A pydantic-ai agent whose tools are the gateway's.

GATEWAY_TOKEN=<jwt> python pydantic_ai_agent.py http://127.0.0.1:8080/mcp
"""

import os
import sys

from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset


def gateway_toolset(url: str, token: str) -> MCPToolset:
    # Every tool the policy lets this token see, as <upstream>__<tool>.
    return MCPToolset(url, headers={"Authorization": f"Bearer {token}"})


if __name__ == "__main__":
    toolset = gateway_toolset(sys.argv[1], os.environ["GATEWAY_TOKEN"])
    agent = Agent("openai:gpt-5", toolsets=[toolset])
    print(agent.run_sync("Echo 'hello' with the demo__echo tool.").output)
