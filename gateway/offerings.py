"""What upstreams offer besides tools: prompts, resources and resource templates, as the
gateway exposes them (docs/mcp.md, "Names and URIs").

Plain frozen dataclasses like `gateway.types.ToolDefinition`: a prompt is named
``<upstream>__<prompt>``; a resource's URI is ``gateway:<upstream>/<original URI>``
(the original verbatim after the first slash), a template's likewise, so that URI
template expansion still works on the gateway's form. ``definition_hash`` pins what
an approver saw (`gateway.upstreams.mcp_definitions`); the contents are never pinned.

Each has `to_policy_resource`, the ``input.resource`` of its policy decisions
(architecture.md §5), and `to_listing`, its entry in the MCP list result (MCP
spelling, names and URIs in the gateway's form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# The kinds of definition the pin table holds (`gateway.store.tables.tool_pins.kind`).
DefinitionKind = Literal["tool", "prompt", "resource", "resource_template"]


@dataclass(frozen=True)
class PromptDefinition:
    name: str  # <upstream>__<prompt>
    server: str
    upstream_name: str
    title: str | None
    description: str | None
    # As the upstream lists them: [{"name", "description"?, "required"?, "title"?}].
    arguments: tuple[dict[str, Any], ...]
    definition_hash: str
    labels: tuple[str, ...] = ()

    def required_arguments(self) -> list[str]:
        return [a["name"] for a in self.arguments if a.get("required") is True]

    def to_policy_resource(self) -> dict[str, Any]:
        return {
            "prompt": self.name,
            "server": self.server,
            "upstream_prompt": self.upstream_name,
            "definition_hash": self.definition_hash,
            "labels": list(self.labels),
        }

    def to_listing(self, name: str) -> dict[str, Any]:
        return _without_none(
            {
                "name": name,
                "title": self.title,
                "description": self.description,
                "arguments": [dict(a) for a in self.arguments] or None,
            }
        )


@dataclass(frozen=True)
class ResourceDefinition:
    uri: str  # gateway:<upstream>/<upstream uri>
    server: str
    upstream_uri: str
    name: str
    title: str | None
    description: str | None
    mime_type: str | None
    annotations: dict[str, Any]
    definition_hash: str
    size: int | None = None  # listed, not pinned: it changes with the contents
    labels: tuple[str, ...] = ()

    def to_policy_resource(self) -> dict[str, Any]:
        return _resource_policy(self, "resource", self.uri, self.upstream_uri)

    def to_listing(self, uri: str) -> dict[str, Any]:
        return _resource_listing(self, {"uri": uri}, size=self.size)


@dataclass(frozen=True)
class TemplateDefinition:
    uri_template: str  # gateway:<upstream>/<upstream uri template>
    server: str
    upstream_uri_template: str
    name: str
    title: str | None
    description: str | None
    mime_type: str | None
    annotations: dict[str, Any]
    definition_hash: str
    labels: tuple[str, ...] = ()

    def to_policy_resource(self) -> dict[str, Any]:
        # "uri" is the template itself, so that one grant by URI prefix covers a
        # template and the resources read through it.
        return _resource_policy(
            self, "resource_template", self.uri_template, self.upstream_uri_template
        )

    def to_listing(self, uri_template: str) -> dict[str, Any]:
        return _resource_listing(self, {"uriTemplate": uri_template})


def _resource_policy(
    definition: ResourceDefinition | TemplateDefinition, kind: str, uri: str, upstream_uri: str
) -> dict[str, Any]:
    return {
        "kind": kind,
        "uri": uri,
        "server": definition.server,
        "upstream_uri": upstream_uri,
        "name": definition.name,
        "mime_type": definition.mime_type,
        "definition_hash": definition.definition_hash,
        "labels": list(definition.labels),
    }


def _resource_listing(
    definition: ResourceDefinition | TemplateDefinition, uri: dict[str, str], **more: Any
) -> dict[str, Any]:
    return _without_none(
        {
            **uri,
            "name": definition.name,
            "title": definition.title,
            "description": definition.description,
            "mimeType": definition.mime_type,
            "annotations": definition.annotations or None,
            **more,
        }
    )


def _without_none(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if v is not None}
