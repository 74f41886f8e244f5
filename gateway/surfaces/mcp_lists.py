"""The MCP list results (``tools/list``, ``prompts/list``, ``resources/list``,
``resources/templates/list``), from entries built once per definition.

A list of 1,000 tools used to build and validate 1,000 SDK models, dump them, and
have the SDK's runner validate and dump them again against the protocol revision's
result schema: ≈ 90 ms of the gateway's CPU per list, on the event loop
(docs/performance.md, "Lists"). Now each definition's entry is built once per way
of showing it (`wire_forms`) — the view (`/mcp` names or `/mcp/{upstream}`'s), the
protocol revision's own model of an entry, and whether calls may be tasks — as it was
built before (the SDK's model of the entry, then its dump), validated into the
revision's model of that entry (`mcp_types.methods.SERVER_RESULTS`). A list answers
a plain result dict of those entries (a dict is a handler result the SDK's runner
takes as it is). The runner still puts it through its serializer for the revision,
which takes an entry already of that revision's model as validated, and writes it: the
one MCP wire path is unchanged, only the rebuilding of what did not change is gone.

A list is a `Listing`: that result dict, and a key naming everything its wire form
depends on (the method, view, revision, task support, and the very definition
objects listed), under which the direct path (`mcp_direct`) keeps the result as it
wrote it (docs/decisions/0038).

Only what `gateway.lists` let the principal see is looked up here; nothing here
decides what is shown. No pagination: a list is answered whole, as before.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import mcp_types as types
from mcp_types.methods import SERVER_RESULTS
from pydantic import BaseModel

from gateway.offerings import PromptDefinition, ResourceDefinition, TemplateDefinition
from gateway.surfaces.mcp_views import View
from gateway.surfaces.wire_forms import WireForms
from gateway.types import ToolDefinition
from gateway.upstreams.catalog import Catalog

if TYPE_CHECKING:
    from starlette.requests import Request

ListMethod = Literal["tools/list", "prompts/list", "resources/list", "resources/templates/list"]
LIST_METHODS: tuple[ListMethod, ...] = typing.get_args(ListMethod)

# Each list's field of entries (the python name in the SDK's result models) and the
# SDK's own model of one entry, as every handler built it before.
_FIELD: dict[ListMethod, tuple[str, str, type[BaseModel]]] = {
    # method: (field name, wire key, entry model)
    "tools/list": ("tools", "tools", types.Tool),
    "prompts/list": ("prompts", "prompts", types.Prompt),
    "resources/list": ("resources", "resources", types.Resource),
    "resources/templates/list": ("resource_templates", "resourceTemplates", types.ResourceTemplate),
}
# The system of the gateway's own tools (`workflow__*`): never tasks.
_LOCAL_SERVER = "workflow"


@dataclass(frozen=True, eq=False)
class Listing:
    """A list's result (what the SDK's runner takes from a handler), and ``key``: the
    method, view, protocol revision, variant and the ids of the definitions listed, in
    order. Two listings with equal keys have the same result. ``listed`` holds the
    definitions, so their ids cannot be reused while a key naming them is kept."""

    result: dict[str, Any]
    key: tuple[Any, ...]
    listed: tuple[Any, ...]


# A list's result for the caller of a request, at a protocol revision
# (`gateway.surfaces.mcp_handlers.Handlers.listing`).
ListAnswer = Callable[["Request", ListMethod, str], Awaitable[Listing]]


class UnexpectedResultModel(TypeError):
    """The SDK's result model for a list is not ``{<entries>: list[<entry model>]}``:
    an SDK upgrade changed its shape (tests/unit/surfaces/test_mcp_lists.py)."""


@functools.cache
def entry_model(method: ListMethod, version: str) -> type[BaseModel]:
    """The model of one entry of ``method``'s result at protocol revision ``version``:
    what the SDK's runner validates each entry of the list against."""
    field, _, _ = _FIELD[method]
    surface = SERVER_RESULTS[(method, version)]
    if not isinstance(surface, type) or not issubclass(surface, BaseModel):
        raise UnexpectedResultModel(f"{method} at {version}: {surface!r} is not a model")
    annotation = surface.model_fields[field].annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is not list or len(args) != 1:
        raise UnexpectedResultModel(f"{method} at {version}: {field} is {annotation!r}")
    (entry,) = args
    if not isinstance(entry, type) or not issubclass(entry, BaseModel):
        raise UnexpectedResultModel(f"{method} at {version}: an entry is {entry!r}")
    return entry


def mcp_tool(tool: ToolDefinition, view: View, *, task_support: bool) -> dict[str, Any]:
    """A tool's entry, in the SDK's spelling, before the revision's model."""
    return {
        "name": view.name_out(tool.name, tool.upstream_tool),
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
        "annotations": tool.annotations or None,
        # 2025-11-25: any call may be held for approval, so any may be a task
        # (the 2026 revision's model drops the field; there the server decides).
        "execution": {"taskSupport": "optional"} if task_support else None,
    }


class McpLists:
    """The list results of every view and revision, from entries built once."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._forms: dict[tuple[Any, ...], WireForms[Any, BaseModel]] = {}

    def tools(
        self, tools: Sequence[ToolDefinition], view: View, version: str, *, tasks: bool
    ) -> Listing:
        """The ``tools/list`` result of ``tools`` (those the principal may see).
        ``tasks``: calls may be tasks (2025-11-25 ``execution.taskSupport``), except
        the gateway's own tools."""

        def wire(tool: ToolDefinition) -> dict[str, Any]:
            return mcp_tool(tool, view, task_support=tasks and tool.server != _LOCAL_SERVER)

        return self._result("tools/list", tools, view, version, wire, self._catalog.tools, tasks)

    def prompts(self, prompts: Sequence[PromptDefinition], view: View, version: str) -> Listing:
        def wire(prompt: PromptDefinition) -> dict[str, Any]:
            return prompt.to_listing(view.name_out(prompt.name, prompt.upstream_name))

        return self._result(
            "prompts/list", prompts, view, version, wire, lambda: self._catalog.prompts()
        )

    def resources(
        self, resources: Sequence[ResourceDefinition], view: View, version: str
    ) -> Listing:
        def wire(resource: ResourceDefinition) -> dict[str, Any]:
            return resource.to_listing(view.uri_out(resource.uri))

        return self._result(
            "resources/list", resources, view, version, wire, lambda: self._catalog.resources()
        )

    def templates(
        self, templates: Sequence[TemplateDefinition], view: View, version: str
    ) -> Listing:
        def wire(template: TemplateDefinition) -> dict[str, Any]:
            return template.to_listing(view.uri_out(template.uri_template))

        return self._result(
            "resources/templates/list",
            templates,
            view,
            version,
            wire,
            lambda: self._catalog.templates(),
        )

    def _result(
        self,
        method: ListMethod,
        listed: Sequence[Any],
        view: View,
        version: str,
        wire: Callable[[Any], dict[str, Any]],
        current: Callable[[], Iterable[Any]],
        *variant: Any,
    ) -> Listing:
        model = entry_model(method, version)
        key = (method, view, model, *variant)
        forms = self._forms.get(key)
        if forms is None:
            _, _, sdk_model = _FIELD[method]

            def build(item: Any) -> BaseModel:
                # As the handlers built an entry before (the SDK's model of it, then
                # its dump), then validated into the revision's model once, here.
                dumped = sdk_model.model_validate(wire(item)).model_dump(
                    by_alias=True, mode="json", exclude_none=True
                )
                return model.model_validate(dumped, by_name=False)

            forms = self._forms[key] = WireForms(build, current)
        _, field, _ = _FIELD[method]
        # "complete": what the SDK's result models default to (the 2026 revision
        # requires it; the earlier ones drop it).
        result = {field: forms.of(listed), "resultType": "complete"}
        held = tuple(listed)
        return Listing(result, (method, view, version, *variant, *map(id, held)), held)
