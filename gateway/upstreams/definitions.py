"""Tool definitions as the gateway exposes them: names, hashes and risk.

The definition hash pins what an approver saw (architecture.md §7): SHA-256 over the JCS of
the upstream's name, description, inputSchema, outputSchema and annotations. Any
change to what the model is told about a tool changes the hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.canonical import sha256_hex
from gateway.config import RiskConfig
from gateway.types import Risk, ToolDefinition
from gateway.upstreams.naming import gateway_name


@dataclass(frozen=True)
class UpstreamTool:
    """A tool exactly as an upstream describes it."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    title: str | None = None
    # 2025-11-25 ``execution.taskSupport`` (``optional``/``required``): not pinned, it
    # says how the tool may be called, not what it does (docs/decisions/0030).
    task_support: str | None = None


def definition_document(tool: UpstreamTool) -> dict[str, Any]:
    """What the hash covers, with the MCP spelling of its keys; stored with each pin so
    an approver can see what changed."""
    return {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
        "annotations": tool.annotations,
    }


def definition_hash(tool: UpstreamTool) -> str:
    return sha256_hex(definition_document(tool))


def assess_risk(tool: UpstreamTool, config: RiskConfig, *, trust_annotations: bool) -> Risk:
    """Config first; then annotations, but only from upstreams the admin trusts.

    An untrusted server could otherwise declare its destructive tool read-only.
    """
    if tool.name in config.tools:
        return config.tools[tool.name]
    if trust_annotations and tool.annotations:
        if tool.annotations.get("destructiveHint") is True:
            return "high"
        if tool.annotations.get("readOnlyHint") is True:
            return "low"
    return config.default or "medium"


def to_definition(
    server: str,
    tool: UpstreamTool,
    *,
    risk: RiskConfig,
    trust_annotations: bool,
    labels: tuple[str, ...] = (),
) -> ToolDefinition:
    return ToolDefinition(
        name=gateway_name(server, tool.name),
        server=server,
        upstream_tool=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=dict(tool.annotations or {}),
        risk=assess_risk(tool, risk, trust_annotations=trust_annotations),
        definition_hash=definition_hash(tool),
        labels=labels,
        title=tool.title,
    )
