"""The MCP methods the benchmarks send, one entry each.

A method is what one call sends (JSON-RPC method, params, the `Mcp-Name` header) in
terms of the *upstream's* names; each target renames them its own way (the gateway
prefixes ``up__``, ContextForge ``up-``), see `bench.targets.Target.rename`.

Adding a method is one entry in `METHODS`: what the raw client sends, and the MCP SDK
client's call for the same request. Each target's `rename` maps an upstream tool or
prompt name, or a resource URI (anything with ``://``), to its own (the gateway:
``up__greet``, ``gateway:up/test://static``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

# What every target calls on the recording test server: the tool `echo`, the resource
# `test://static` and the prompt `greet`.
ECHO = "echo"
ARGUMENTS = {"text": "bench"}
RESOURCE_URI = "test://static"
PROMPT = "greet"
PROMPT_ARGUMENTS = {"name": "bench"}


class Renames(Protocol):
    def rename(self, upstream_name: str) -> str: ...


@dataclass(frozen=True)
class Method:
    name: str  # the JSON-RPC method
    params: Callable[[Renames], dict[str, Any]]  # params without `_meta`
    # The same request through the MCP SDK's `Client` (its result, or it raises).
    sdk: Callable[[Any, dict[str, Any]], Awaitable[Any]]
    # The `Mcp-Name` header of the 2026-07-28 era (the tool, resource or prompt), or None.
    mcp_name: Callable[[Renames], str | None] = lambda _target: None


METHODS: dict[str, Method] = {
    "tools/call": Method(
        "tools/call",
        lambda t: {"name": t.rename(ECHO), "arguments": ARGUMENTS},
        lambda c, p: c.call_tool(p["name"], p["arguments"]),
        lambda t: t.rename(ECHO),
    ),
    "tools/list": Method("tools/list", lambda _t: {}, lambda c, _p: c.list_tools()),
    "resources/read": Method(
        "resources/read",
        lambda t: {"uri": t.rename(RESOURCE_URI)},
        lambda c, p: c.read_resource(p["uri"]),
        lambda t: t.rename(RESOURCE_URI),
    ),
    "prompts/get": Method(
        "prompts/get",
        lambda t: {"name": t.rename(PROMPT), "arguments": PROMPT_ARGUMENTS},
        lambda c, p: c.get_prompt(p["name"], p["arguments"]),
        lambda t: t.rename(PROMPT),
    ),
}
