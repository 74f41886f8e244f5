"""A real agent framework pointed at the gateway URL: pydantic-ai, with a scripted model
(FunctionModel) standing in for the LLM, so the tool calls are exactly known. The
toolset is the one docs/agents.md shows (docs/examples/agents/pydantic_ai_agent.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tests.support.agent_examples import load
from tests.support.processes import GatewayServer, McpUpstreamServer, read_calls

pytestmark = pytest.mark.anyio


def scripted(tool: str, arguments: dict[str, Any], seen_tools: list[str]) -> FunctionModel:
    """First turn: call `tool`. Second turn: answer with what the tool returned."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # A tool error reaches the model as a retry prompt carrying the error text.
        returns = [
            p
            for m in messages
            for p in getattr(m, "parts", [])
            if isinstance(p, ToolReturnPart | RetryPromptPart)
        ]
        if not returns:
            seen_tools.extend(t.name for t in info.function_tools)
            return ModelResponse(parts=[ToolCallPart(tool_name=tool, args=arguments)])
        return ModelResponse(parts=[TextPart(content=f"tool said: {returns[-1].content}")])

    return FunctionModel(respond)


async def test_pydantic_ai_agent_calls_tools_through_the_gateway(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer
) -> None:
    toolset = load("pydantic_ai_agent").gateway_toolset(
        gateway.mcp_url, gateway.token(sub="agent:pydantic-ai")
    )
    seen: list[str] = []
    agent = Agent(scripted("up__echo", {"text": "from pydantic-ai"}, seen), toolsets=[toolset])

    result = await agent.run("please echo")

    assert "from pydantic-ai" in result.output
    assert "up__echo" in seen and "up__write" not in seen  # the filtered catalog
    assert {"text": "from pydantic-ai"} in [c["arguments"] for c in mcp_upstream.calls()]


async def test_pydantic_ai_agent_sees_a_denial_as_a_tool_error(
    gateway: GatewayServer, stdio_call_log: Path
) -> None:
    toolset = load("pydantic_ai_agent").gateway_toolset(gateway.mcp_url, gateway.token())
    before = len(read_calls(stdio_call_log))
    # The model asks for a tool policy refuses; the framework must get the refusal text
    # back as the tool's answer, and the upstream must never see the call.
    agent = Agent(scripted("local__echo", {"text": "x" * 30}, []), toolsets=[toolset])
    result = await agent.run("go")
    assert "was not executed" in result.output
    assert "max_length" in result.output
    assert len(read_calls(stdio_call_log)) == before
