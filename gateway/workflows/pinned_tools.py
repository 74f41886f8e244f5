"""The catalog as pinned: every approved tool definition, read from the database and
the config, without asking any upstream.

`gateway runs replay` and `gateway workflows test --policy` decide offline, with a
candidate policy on the operator's machine, so they cannot use the running gateway's
catalog (its entries come from listing the upstreams). Policy sees the same tool
entry either way: the pinned definition (what an approver approved, `tool_pins`) made
a `ToolDefinition` by the catalog's own `to_definition`, with the upstream's risk,
labels and trust from the config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.config import Upstream
from gateway.errors import UnknownTool
from gateway.types import ToolDefinition
from gateway.upstreams.definitions import UpstreamTool, to_definition
from gateway.upstreams.listing import validator_for
from gateway.upstreams.pins import PinStatus, PinStore
from gateway.upstreams.targets import check_arguments


@dataclass(frozen=True)
class PinnedTool:
    """What validation and drift checks need of a catalog entry
    (`gateway.executor.validation.ToolLookup`), for an approved definition."""

    definition: ToolDefinition
    validator: Any

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def definition_hash(self) -> str:
        return self.definition.definition_hash

    def validate(self, arguments: dict[str, Any]) -> None:
        check_arguments(self.definition.name, self.validator, arguments)


class PinnedTools:
    """`resolve(name)` like `gateway.upstreams.catalog.Catalog.resolve`, over the pins:
    a tool never seen, quarantined, pinned only by hash (no definition), or of an
    upstream no longer configured is unknown."""

    def __init__(self, tools: dict[str, PinnedTool]) -> None:
        self._tools = tools

    def resolve(self, name: str) -> PinnedTool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(
                f"no approved definition of tool {name!r} is pinned", details={"tool": name}
            ) from None

    def resources(self, names: set[str]) -> dict[str, dict[str, Any]]:
        """What policy sees of each of ``names`` that is pinned."""
        return {
            n: self._tools[n].definition.to_policy_resource()
            for n in sorted(names)
            if n in self._tools
        }


def pinned_tools(database: sa.Engine, configured: Iterable[Upstream]) -> PinnedTools:
    """The approved tools of the ``configured`` upstreams (a config's ``upstreams``)."""
    upstreams = {u.name: u for u in configured}
    tools = {}
    for row in PinStore(database).read().values():
        upstream = upstreams.get(row.upstream or "")
        if row.kind != "tool" or row.status != PinStatus.PINNED or upstream is None:
            continue
        document = row.definition
        if not isinstance(document, dict) or not isinstance(document.get("name"), str):
            continue
        tool = UpstreamTool(
            name=document["name"],
            description=document.get("description"),
            input_schema=document.get("inputSchema") or {"type": "object"},
            output_schema=document.get("outputSchema"),
            annotations=document.get("annotations"),
        )
        definition = to_definition(
            upstream.name,
            tool,
            risk=upstream.risk,
            trust_annotations=upstream.trust_annotations,
            labels=tuple(upstream.labels),
        )
        if definition.definition_hash != row.definition_hash:
            continue  # not what was approved: never decide with it
        tools[definition.name] = PinnedTool(definition, validator_for(definition.input_schema))
    return PinnedTools(tools)
