"""The MCP methods the benchmarks send, one entry each.

A method is what one call sends (JSON-RPC method, params, the `Mcp-Name` header) in
terms of the *upstream's* names; each target renames them its own way (the gateway
prefixes ``up__``, ContextForge ``up-``), see `bench.targets.Target.rename`.

Adding a method is one entry in `METHODS`. ``resources/read`` and ``prompts/get`` do
not exist on the gateway yet (another issue adds them); once the bench upstream serves
a resource and a prompt, their entries are:

    "resources/read": Method("resources/read", lambda t: {"uri": t.rename_uri(URI)}, ...),
    "prompts/get": Method("prompts/get", lambda t: {"name": t.rename("greeting"),
                                                    "arguments": {"name": "bench"}}, ...),

and `bench.comparison --methods tools/call,resources/read` measures them like the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# The upstream tool every target calls: the recording test server's `echo`.
ECHO = "echo"
ARGUMENTS = {"text": "bench"}


class Renames(Protocol):
    def rename(self, upstream_name: str) -> str: ...


@dataclass(frozen=True)
class Method:
    name: str  # the JSON-RPC method
    params: Callable[[Renames], dict[str, Any]]  # params without `_meta`
    # The `Mcp-Name` header of the 2026-07-28 era (the tool, resource or prompt), or None.
    mcp_name: Callable[[Renames], str | None] = lambda _target: None


METHODS: dict[str, Method] = {
    "tools/call": Method(
        "tools/call",
        lambda t: {"name": t.rename(ECHO), "arguments": ARGUMENTS},
        lambda t: t.rename(ECHO),
    ),
    "tools/list": Method("tools/list", lambda _t: {}),
}
