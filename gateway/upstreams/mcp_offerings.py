"""An MCP upstream's prompts, resources and templates, and the results of reading,
getting and completing them, turned from the SDK's models into the gateway's terms.

Lists are read page by page from a connected SDK `Client` (only what the upstream's
capabilities announce). Results are rebuilt from the method's own fields, never the
upstream's ``_meta`` (architecture.md §7, as for tool results), and every resource URI
in them (a read's contents, embedded resources, resource links) is put in the
gateway's form (`naming.gateway_uri`), so that what the client is given can be read
back through the gateway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp import Client
from mcp_types import GetPromptResult, ReadResourceResult

from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_definitions import (
    UpstreamOfferings,
    UpstreamPrompt,
    UpstreamResource,
    UpstreamTemplate,
)
from gateway.upstreams.naming import gateway_uri

# Pages read from one upstream's list before the rest is ignored (a loop guard against
# an upstream whose cursors never end).
MAX_PAGES = 100


async def list_offerings(client: Client) -> UpstreamOfferings:
    capabilities = client.server_capabilities
    prompts: list[UpstreamPrompt] = []
    resources: list[UpstreamResource] = []
    templates: list[UpstreamTemplate] = []
    if capabilities.prompts is not None:
        for page in await _pages(lambda c: client.list_prompts(cursor=c, cache_mode="bypass")):
            prompts += [_prompt(p) for p in page.prompts]
    if capabilities.resources is not None:
        for page in await _pages(lambda c: client.list_resources(cursor=c, cache_mode="bypass")):
            resources += [_resource(r) for r in page.resources]
        for page in await _pages(
            lambda c: client.list_resource_templates(cursor=c, cache_mode="bypass")
        ):
            templates += [_template(t) for t in page.resource_templates]
    return UpstreamOfferings(prompts, resources, templates)


async def _pages(fetch: Callable[[str | None], Awaitable[Any]]) -> list[Any]:
    pages = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        pages.append(page)
        cursor = page.next_cursor
        if not cursor:
            break
    return pages


def _dump(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    dumped.pop("_meta", None)
    return dumped or None


def _prompt(prompt: Any) -> UpstreamPrompt:
    arguments = tuple(_dump(a) or {} for a in prompt.arguments or [])
    return UpstreamPrompt(prompt.name, prompt.title, prompt.description, arguments)


def _resource(resource: Any) -> UpstreamResource:
    return UpstreamResource(
        uri=str(resource.uri),
        name=resource.name,
        title=resource.title,
        description=resource.description,
        mime_type=resource.mime_type,
        annotations=_dump(resource.annotations),
        size=resource.size,
    )


def _template(template: Any) -> UpstreamTemplate:
    return UpstreamTemplate(
        uri_template=template.uri_template,
        name=template.name,
        title=template.title,
        description=template.description,
        mime_type=template.mime_type,
        annotations=_dump(template.annotations),
    )


# --- results ---------------------------------------------------------------------------


def namespaced_content(server: str, item: dict[str, Any]) -> dict[str, Any]:
    """One content item (already dumped, without ``_meta``) with its resource URI in
    the gateway's form: an embedded resource's ``resource.uri``, a resource link's
    ``uri``. Other items are returned as they are."""
    kind = item.get("type")
    if kind == "resource" and isinstance(item.get("resource"), dict):
        inner = dict(item["resource"])
        inner.pop("_meta", None)
        if isinstance(inner.get("uri"), str):
            inner["uri"] = gateway_uri(server, inner["uri"])
        return {**item, "resource": inner}
    if kind == "resource_link" and isinstance(item.get("uri"), str):
        return {**item, "uri": gateway_uri(server, item["uri"])}
    return item


def _content(server: str, model: Any) -> dict[str, Any]:
    return namespaced_content(server, _dump(model) or {})


def read_document(server: str, result: ReadResourceResult) -> dict[str, Any]:
    contents = []
    for item in result.contents:
        dumped = _dump(item) or {}
        dumped["uri"] = gateway_uri(server, str(item.uri))
        contents.append(dumped)
    return {"contents": contents}


def prompt_document(server: str, result: GetPromptResult) -> dict[str, Any]:
    messages = [{"role": m.role, "content": _content(server, m.content)} for m in result.messages]
    document: dict[str, Any] = {"messages": messages}
    if result.description is not None:
        document["description"] = result.description
    return document


def completion_document(result: Any) -> dict[str, Any]:
    completion = result.completion
    document: dict[str, Any] = {"values": list(completion.values)}
    if completion.total is not None:
        document["total"] = completion.total
    if completion.has_more is not None:
        document["hasMore"] = completion.has_more
    return {"completion": document}


def content_size(document: dict[str, Any]) -> int:
    """Bytes of a read's contents as the upstream sent them: UTF-8 text, and blobs by
    the length their base64 encodes."""
    size = 0
    for item in document.get("contents", []):
        if isinstance(item.get("text"), str):
            size += len(item["text"].encode("utf-8"))
        elif isinstance(item.get("blob"), str):
            blob = item["blob"].rstrip("=")
            size += len(blob) * 3 // 4
    return size


def upstream_tool(tool: types.Tool) -> UpstreamTool:
    """A listed tool as the catalog keeps it; at 2025-11-25 with its
    ``execution.taskSupport`` (`mcp_upstream_tasks`)."""
    annotations = (
        tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None
    )
    support = tool.execution.task_support if tool.execution is not None else None
    return UpstreamTool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=annotations or None,
        title=tool.title,
        task_support=support if support in ("optional", "required") else None,
    )
