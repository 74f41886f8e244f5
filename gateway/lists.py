"""What a principal may see of the catalog: the one place lists are filtered by policy
(``tools/list``, ``prompts/list``, ``resources/list`` for resources and templates).

A list is one ``data.gateway.visible`` decision for all its items, cached per
subject, policy and list (`gateway.policy.listing`); a policy written before that
rule existed is asked per item (``data.gateway.decision`` with the list's action and
the item as ``resource``). Either way fail closed: a list policy could not answer
shows nothing; an engine that is overloaded or gives no answer is `PolicyUnavailable`
(503), not an empty list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypeVar, overload

from gateway.offerings import PromptDefinition, ResourceDefinition, TemplateDefinition
from gateway.policy import build_input
from gateway.policy.decider import Decider
from gateway.policy.input import Action
from gateway.policy.listing import ListUnsupported, VisibleItems, VisibleTools, resources_digest
from gateway.types import ClientInfo, Principal, ToolDefinition, Transport
from gateway.upstreams.catalog import Catalog


class _Visible(Protocol):
    def to_policy_resource(self) -> dict[str, Any]: ...


# What a list shows: each says what policy sees of it.
_Listed = TypeVar("_Listed", bound=_Visible)
# What `Lists.offered` lists besides tools.
Offered = Literal["prompts", "resources", "resource_templates"]


class Lists:
    def __init__(self, catalog: Catalog, decider: Decider) -> None:
        self.catalog = catalog
        self.decider = decider
        self._tools = VisibleTools()
        self._offered: dict[Offered, VisibleItems[Any]] = {
            "prompts": VisibleItems("prompts/list", lambda p: p.name, resources_digest),
            "resources": VisibleItems("resources/list", lambda r: r.uri, resources_digest),
            "resource_templates": VisibleItems(
                "resources/list", lambda t: t.uri_template, resources_digest
            ),
        }

    async def tools(
        self,
        principal: Principal,
        *,
        transport: Transport,
        request_id: str,
        client: ClientInfo | None = None,
        upstream: str | None = None,
        local: Sequence[ToolDefinition] = (),
    ) -> list[ToolDefinition]:
        """The tools this principal may see: one ``data.gateway.visible`` decision for
        the whole catalog (gateway.policy.listing), cached per subject, policy and
        catalog; per tool (`_visible`) for a policy written before that rule existed.
        ``local`` are tools the gateway offers itself, listed after the catalog's and
        decided in the same decision."""
        tools = [t for t in self.catalog.tools() if upstream is None or t.server == upstream]
        tools += local
        try:
            return await self._tools.visible(self.decider, principal, tools)
        except ListUnsupported:
            pass
        return await self._visible(
            principal,
            tools,
            "tools/list",
            transport=transport,
            request_id=request_id,
            client=client,
        )

    @overload
    async def offered(
        self, kind: Literal["prompts"], principal: Principal, **asking: Any
    ) -> list[PromptDefinition]: ...

    @overload
    async def offered(
        self, kind: Literal["resources"], principal: Principal, **asking: Any
    ) -> list[ResourceDefinition]: ...

    @overload
    async def offered(
        self, kind: Literal["resource_templates"], principal: Principal, **asking: Any
    ) -> list[TemplateDefinition]: ...

    async def offered(
        self,
        kind: Offered,
        principal: Principal,
        *,
        transport: Transport,
        request_id: str,
        client: ClientInfo | None = None,
        upstream: str | None = None,
    ) -> list[Any]:
        """The prompts (``prompts/list``), resources or resource templates (both
        ``resources/list``: a template is a family of resources, its ``uri`` the
        template) this principal may see, of every upstream or of ``upstream``: one
        ``data.gateway.visible`` decision, as for tools; per item (`_visible`) for a
        policy written before that rule existed."""
        if kind == "prompts":
            action: Action = "prompts/list"
            listed: list[Any] = self.catalog.prompts(upstream)
        else:
            action = "resources/list"
            catalog = self.catalog
            listed = (
                catalog.resources(upstream) if kind == "resources" else catalog.templates(upstream)
            )
        try:
            return await self._offered[kind].visible(self.decider, principal, listed)
        except ListUnsupported:
            pass
        return await self._visible(
            principal, listed, action, transport=transport, request_id=request_id, client=client
        )

    async def _visible(
        self,
        principal: Principal,
        listed: list[_Listed],
        action: Action,
        *,
        transport: Transport,
        request_id: str,
        client: ClientInfo | None,
    ) -> list[_Listed]:
        """The one list filter: what policy lets this principal see under ``action``."""
        visible = []
        for item in listed:
            policy_input = build_input(
                principal=principal,
                action=action,
                request_id=request_id,
                transport=transport,
                resource=item.to_policy_resource(),
                client=client,
            )
            decision = await self.decider.decide(policy_input)
            if decision.allow:
                visible.append(item)
        return visible
