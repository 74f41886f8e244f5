"""Prompt, resource and resource-template definitions: as an upstream lists them, what
their pins cover, and their gateway form (`gateway.offerings`).

The definition hash is SHA-256 over the JCS of what the model or user is told about
the offering (architecture.md §7, like a tool's): a prompt's name, title, description
and arguments; a resource's URI, name, title, description, MIME type and annotations;
a template's URI template and the same. A resource's size and contents are not
covered: they change with the data, and contents are audited by hash on each read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.canonical import sha256_hex
from gateway.offerings import PromptDefinition, ResourceDefinition, TemplateDefinition
from gateway.upstreams.naming import gateway_name, gateway_uri


@dataclass(frozen=True)
class UpstreamPrompt:
    name: str
    title: str | None
    description: str | None
    arguments: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class UpstreamResource:
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    annotations: dict[str, Any] | None = None
    size: int | None = None


@dataclass(frozen=True)
class UpstreamTemplate:
    uri_template: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    annotations: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpstreamOfferings:
    """Everything besides tools that one upstream lists."""

    prompts: list[UpstreamPrompt]
    resources: list[UpstreamResource]
    templates: list[UpstreamTemplate]


def prompt_document(prompt: UpstreamPrompt) -> dict[str, Any]:
    return {
        "name": prompt.name,
        "title": prompt.title,
        "description": prompt.description,
        "arguments": [dict(a) for a in prompt.arguments],
    }


def resource_document(resource: UpstreamResource) -> dict[str, Any]:
    return {
        "uri": resource.uri,
        "name": resource.name,
        "title": resource.title,
        "description": resource.description,
        "mimeType": resource.mime_type,
        "annotations": resource.annotations,
    }


def template_document(template: UpstreamTemplate) -> dict[str, Any]:
    return {
        "uriTemplate": template.uri_template,
        "name": template.name,
        "title": template.title,
        "description": template.description,
        "mimeType": template.mime_type,
        "annotations": template.annotations,
    }


def to_prompt(server: str, prompt: UpstreamPrompt, labels: tuple[str, ...]) -> PromptDefinition:
    return PromptDefinition(
        name=gateway_name(server, prompt.name),
        server=server,
        upstream_name=prompt.name,
        title=prompt.title,
        description=prompt.description,
        arguments=prompt.arguments,
        definition_hash=sha256_hex(prompt_document(prompt)),
        labels=labels,
    )


def to_resource(
    server: str, resource: UpstreamResource, labels: tuple[str, ...]
) -> ResourceDefinition:
    return ResourceDefinition(
        uri=gateway_uri(server, resource.uri),
        server=server,
        upstream_uri=resource.uri,
        name=resource.name,
        title=resource.title,
        description=resource.description,
        mime_type=resource.mime_type,
        annotations=dict(resource.annotations or {}),
        definition_hash=sha256_hex(resource_document(resource)),
        size=resource.size,
        labels=labels,
    )


def to_template(
    server: str, template: UpstreamTemplate, labels: tuple[str, ...]
) -> TemplateDefinition:
    return TemplateDefinition(
        uri_template=gateway_uri(server, template.uri_template),
        server=server,
        upstream_uri_template=template.uri_template,
        name=template.name,
        title=template.title,
        description=template.description,
        mime_type=template.mime_type,
        annotations=dict(template.annotations or {}),
        definition_hash=sha256_hex(template_document(template)),
        labels=labels,
    )
