"""An OpenAI Agents SDK agent whose tools are the gateway's.

GATEWAY_TOKEN=<jwt> python openai_agents_agent.py http://127.0.0.1:8080/mcp
"""

import asyncio
import os
import sys

from agents import Agent, Runner
from agents.mcp import MCPServerStreamableHttp

# The SDK gives up on an MCP request after 5 s by default; a call held for a human's
# approval waits up to approvals.hold_s (20 s by default) before it answers: wait longer.
APPROVAL_HOLD_S = 20


def gateway_server(url: str, token: str) -> MCPServerStreamableHttp:
    return MCPServerStreamableHttp(
        {"url": url, "headers": {"Authorization": f"Bearer {token}"}},
        name="gateway",
        client_session_timeout_seconds=APPROVAL_HOLD_S + 10,
    )


async def main(url: str, token: str) -> None:
    async with gateway_server(url, token) as gateway:
        agent = Agent(name="assistant", model="gpt-5", mcp_servers=[gateway])
        result = await Runner.run(agent, "Echo 'hello' with the demo__echo tool.")
        print(result.final_output)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], os.environ["GATEWAY_TOKEN"]))
