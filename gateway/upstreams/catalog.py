"""The catalog: everything every upstream offers, under one namespace.

The catalog owns the upstream clients for the app's lifetime, discovers their tools,
prompts, resources and resource templates, names them (`naming`: ``<upstream>__<name>``,
``gateway:<upstream>/<uri>``), hashes their definitions, and resolves what an
operation acts on into a `targets.Target`. What the catalog cannot resolve does not
exist for the rest of the gateway.

Every refresh checks each definition against its pin: a quarantined one is left out
of the lists and refused when resolved (`ToolQuarantined`, `DefinitionQuarantined`):
it exists, but may not be used until re-approved. An upstream that cannot be listed
keeps its last checked lists. After a refresh that changed what an upstream offers,
every `on_change` listener is told which lists changed (the MCP surface relays
``notifications/*/list_changed`` to the clients that have a channel for them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.abc

from gateway.errors import (
    StorageError,
    UnknownPrompt,
    UnknownResource,
    UnknownTarget,
    UnknownTool,
    UpstreamError,
)
from gateway.offerings import (
    DefinitionKind,
    PromptDefinition,
    ResourceDefinition,
    TemplateDefinition,
)
from gateway.operations import ClientInput
from gateway.types import CallMethod, ToolDefinition
from gateway.upstreams.base import OfferingsClient, ResourceUpdated
from gateway.upstreams.listing import Binding, Listing, ListName, build_listing, matches
from gateway.upstreams.log_level_target import LogLevelTarget, NoCredentials, Scope
from gateway.upstreams.naming import split_gateway_uri
from gateway.upstreams.pin_plan import Seen
from gateway.upstreams.targets import (
    CatalogEntry,
    CompletionTarget,
    PromptTarget,
    ReadTarget,
    SubscribeTarget,
    Target,
)

log = logging.getLogger(__name__)

# Told after a refresh: (upstream, the lists that changed).
ChangeListener = Callable[[str, frozenset[ListName]], Awaitable[None]]


class Pins(Protocol):
    """What the catalog asks of pinning (`gateway.upstreams.pinning.PinGuard`)."""

    def allows(self, kind: DefinitionKind, name: str, definition_hash: str) -> bool: ...

    def verify(self, kind: DefinitionKind, name: str, definition_hash: str) -> None: ...

    async def check(self, seen: list[Seen]) -> None: ...

    async def watch(self, interval_s: float) -> None: ...


class Catalog:
    def __init__(
        self,
        bindings: list[Binding],
        *,
        pins: Pins,
        pin_sync_interval_s: float = 5.0,
    ) -> None:
        self._bindings = {b.config.name: b for b in bindings}
        self._pins = pins
        self._pin_sync_interval_s = pin_sync_interval_s
        self._listings: dict[str, Listing] = {}
        self._tools: dict[str, CatalogEntry] = {}
        self._prompts: dict[str, PromptDefinition] = {}
        self._listeners: list[ChangeListener] = []
        self._update_listeners: list[ResourceUpdated] = []

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def on_resource_updated(self, listener: ResourceUpdated) -> None:
        """``listener(upstream, upstream URI, calling session)`` on every update of a
        subscribed resource (`OfferingsClient.subscribe_resource`); the session is the
        one whose own upstream session it came on, None for the shared connection."""
        self._update_listeners.append(listener)

    async def _resource_updated(self, upstream: str, uri: str, session: str | None) -> None:
        for listener in self._update_listeners:
            try:
                await listener(upstream, uri, session)
            except Exception:  # a listener's failure must not stop the others
                log.exception("update listener failed for %s of upstream %s", uri, upstream)

    async def connect(self, task_group: anyio.abc.TaskGroup) -> None:
        """Makes the first connection attempt to every upstream, all at once (each
        upstream's start is mostly waiting for its process or its handshake); returns
        when every attempt has ended, connected or not. The connections live in
        ``task_group``. `start` follows."""
        async with anyio.create_task_group() as attempts:
            for binding in self._bindings.values():
                attempts.start_soon(
                    binding.client.start, task_group, self.refresh, self._resource_updated
                )

    async def start(
        self, task_group: anyio.abc.TaskGroup, *, refresh_interval_s: float = 60.0
    ) -> None:
        """Reads every connected upstream's lists, then keeps them fresh."""
        await self.refresh()
        if refresh_interval_s > 0:
            task_group.start_soon(self._refresh_periodically, refresh_interval_s)
        if self._pin_sync_interval_s > 0:
            task_group.start_soon(self._pins.watch, self._pin_sync_interval_s)

    async def _refresh_periodically(self, interval_s: float) -> None:
        # Doubles as a health check: an idle connection that broke is only noticed
        # when it is used, and a changed list only when it is read.
        while True:
            await anyio.sleep(interval_s)
            await self.refresh()

    async def close(self) -> None:
        # Close in reverse order of starting; one failing close must not leak the others.
        for binding in reversed(list(self._bindings.values())):
            try:
                with anyio.CancelScope(shield=True):
                    await binding.client.close()
            except Exception:
                log.exception("closing upstream %s failed", binding.config.name)

    # --- refresh -------------------------------------------------------------------

    async def refresh(self, upstream: str | None = None) -> None:
        """Re-reads the lists. An upstream that cannot answer keeps its last known ones."""
        names = [upstream] if upstream else list(self._bindings)
        for name in names:
            binding = self._bindings[name]
            try:
                tools = await binding.client.list_tools()
                offerings = await binding.client.list_offerings()
            except UpstreamError as exc:
                log.warning("cannot list what upstream %s offers: %s", name, exc.message)
                continue
            listing, seen = build_listing(binding, tools, offerings)
            try:
                await self._pins.check(seen)
            except StorageError as exc:
                # Unchecked definitions are not offered: keep the last checked lists.
                log.warning("cannot check the pins of upstream %s: %s", name, exc.message)
                continue
            before = self._listings.get(name)
            self._install(name, listing)
            if before is not None:
                await self._tell(name, before, listing)

    def _install(self, name: str, listing: Listing) -> None:
        old = self._listings.get(name, Listing())
        for tool in old.tools:
            self._tools.pop(tool, None)
        for prompt in old.prompts:
            self._prompts.pop(prompt, None)
        self._tools.update(listing.tools)
        self._prompts.update(listing.prompts)
        self._listings[name] = listing

    async def _tell(self, name: str, before: Listing, after: Listing) -> None:
        old, new = before.fingerprint(), after.fingerprint()
        changed = frozenset(k for k in new if new[k] != old[k])
        if not changed:
            return
        for listener in self._listeners:
            try:
                await listener(name, changed)
            except Exception:  # a listener's failure must not stop the refresh
                log.exception("change listener failed for upstream %s", name)

    # --- what may be offered (quarantined definitions left out) ----------------------

    def tools(self) -> list[ToolDefinition]:
        return [
            e.definition
            for e in self._tools.values()
            if self._pins.allows("tool", e.name, e.definition_hash)
        ]

    def prompts(self, upstream: str | None = None) -> list[PromptDefinition]:
        return [
            p
            for listing in self._of(upstream)
            for p in listing.prompts.values()
            if self._pins.allows("prompt", p.name, p.definition_hash)
        ]

    def resources(self, upstream: str | None = None) -> list[ResourceDefinition]:
        return [
            r
            for listing in self._of(upstream)
            for r in listing.resources.values()
            if self._pins.allows("resource", r.uri, r.definition_hash)
        ]

    def templates(self, upstream: str | None = None) -> list[TemplateDefinition]:
        return [
            t
            for listing in self._of(upstream)
            for t, _ in listing.templates.values()
            if self._pins.allows("resource_template", t.uri_template, t.definition_hash)
        ]

    def _of(self, upstream: str | None) -> list[Listing]:
        if upstream is None:
            return list(self._listings.values())
        listing = self._listings.get(upstream)
        return [listing] if listing is not None else []

    def upstreams(self) -> list[str]:
        return list(self._bindings)

    def end_session(self, session_id: str) -> None:
        """A calling session ended: every upstream closes the upstream session it held
        for it, if any (`mcp_caller_sessions`, docs/decisions/0034)."""
        for binding in self._bindings.values():
            end = getattr(binding.client, "end_session", None)
            if end is not None:
                end(session_id)

    async def session_log_level(
        self, session_id: str, level: str, upstream: str | None = None
    ) -> None:
        """A calling session set its log level (``logging/setLevel``, decided by the
        pipeline: `LogLevelTarget`): each upstream session of its own (of ``upstream``
        alone, when named) hears it, all at once (docs/decisions/0034)."""
        await self._each_session_upstream("session_log_level", upstream, session_id, level)

    async def session_roots_changed(
        self, session_id: str, client_input: ClientInput, upstream: str | None = None
    ) -> None:
        """A calling session's client said its roots changed
        (``notifications/roots/list_changed``): its own upstream sessions are told, so
        an upstream that keeps the roots asks again — through ``client_input``, the
        session's own stream, under policy (docs/decisions/0034)."""
        await self._each_session_upstream(
            "session_roots_changed", upstream, session_id, client_input
        )

    async def _each_session_upstream(self, what: str, upstream: str | None, *args: Any) -> None:
        # Concurrently: one slow upstream must not hold the others' (and the caller's
        # answer) behind it. Each client logs its own failure and never raises.
        async with anyio.create_task_group() as telling:
            for name, binding in self._bindings.items():
                tell = getattr(binding.client, what, None)
                if tell is not None and upstream in (None, name):
                    telling.start_soon(tell, *args)

    # --- resolving what an operation acts on ------------------------------------------

    def resolve(self, name: str) -> CatalogEntry:
        """A tool. Raises `UnknownTool`, or `ToolQuarantined` for a tool whose
        definition changed since it was approved."""
        try:
            entry = self._tools[name]
        except KeyError:
            raise UnknownTool(f"unknown tool {name!r}", details={"tool": name}) from None
        self._pins.verify("tool", entry.name, entry.definition_hash)
        return entry

    def resolve_target(self, method: CallMethod, target: str) -> Target:
        """What ``target`` names for ``method`` (`gateway.operations.Operation.target`)."""
        if method == "tools/call":
            return self.resolve(target)
        if method == "prompts/get":
            return self._prompt_target(target)
        if method == "resources/read":
            return self._read_target(target)
        if method == "resources/subscribe":
            return SubscribeTarget.of(self._read_target(target))
        if method == "logging/setLevel":
            return self._log_level_target(target)
        return self._completion_target(target)

    def _log_level_target(self, target: str) -> LogLevelTarget:
        """``*``: every upstream (``/mcp``); else the upstream the endpoint serves."""
        if target != "*" and target not in self._bindings:
            raise UnknownTarget(f"no upstream {target!r}", details={"upstream": target})
        server = None if target == "*" else target
        return LogLevelTarget(server, self.session_log_level, Scope(target), NoCredentials())

    def offerings_client(self, upstream: str) -> OfferingsClient | None:
        """The MCP upstream ``upstream``'s client, None for an HTTP API or an unknown one."""
        binding = self._bindings.get(upstream)
        client = binding.client if binding is not None else None
        return client if isinstance(client, OfferingsClient) else None

    def _prompt_target(self, name: str) -> PromptTarget:
        prompt = self._prompts.get(name)
        if prompt is None:
            raise UnknownPrompt(f"unknown prompt {name!r}", details={"prompt": name})
        self._pins.verify("prompt", prompt.name, prompt.definition_hash)
        server, client = self._mcp(prompt.server)
        binding = self._bindings[server]
        return PromptTarget(server, client, binding.config, binding.credentials, prompt)

    def _read_target(self, uri: str) -> ReadTarget:
        server, original = self._route(uri)
        listing = self._listings.get(server, Listing())
        _, client = self._mcp(server)
        binding = self._bindings[server]
        resource = listing.resources.get(uri)
        template = None
        if resource is not None:
            self._pins.verify("resource", uri, resource.definition_hash)
        else:
            template = self._approved_template(listing, original)
        return ReadTarget(
            server, client, binding.config, binding.credentials, uri, original, resource, template
        )

    def _approved_template(self, listing: Listing, original: str) -> TemplateDefinition | None:
        """The approved template ``original`` matches, if any. A URI that only
        quarantined templates match is refused: reading through a template whose
        description changed is using the changed definition."""
        matching = [t for t, parsed in listing.templates.values() if matches(parsed, original)]
        for template in matching:
            if self._pins.allows(
                "resource_template", template.uri_template, template.definition_hash
            ):
                return template
        if matching:
            first = matching[0]
            self._pins.verify("resource_template", first.uri_template, first.definition_hash)
        return None

    def _completion_target(self, name: str) -> CompletionTarget:
        if split_gateway_uri(name) is None:
            prompt = self._prompt_target(name)
            arguments = tuple(a["name"] for a in prompt.definition.arguments)
            return CompletionTarget(
                prompt.server,
                prompt.upstream,
                prompt.config,
                prompt.credentials,
                "ref/prompt",
                prompt.definition,
                None,
                arguments,
            )
        server, _ = self._route(name)
        entry = self._listings.get(server, Listing()).templates.get(name)
        if entry is None:
            raise UnknownResource(f"no resource template {name!r}", details={"uri": name})
        template, parsed = entry
        self._pins.verify("resource_template", template.uri_template, template.definition_hash)
        _, client = self._mcp(server)
        binding = self._bindings[server]
        return CompletionTarget(
            server,
            client,
            binding.config,
            binding.credentials,
            "ref/resource",
            None,
            template,
            tuple(parsed.variable_names),
        )

    def _route(self, uri: str) -> tuple[str, str]:
        """(upstream, original URI) of a gateway URI; never guessed."""
        routed = split_gateway_uri(uri)
        if routed is None or routed[0] not in self._bindings:
            raise UnknownResource(
                f"resource {uri!r} not found: the gateway's resource URIs are "
                "gateway:<upstream>/<URI>",
                details={"uri": uri},
            )
        return routed

    def _mcp(self, server: str) -> tuple[str, OfferingsClient]:
        client = self._bindings[server].client
        if not isinstance(client, OfferingsClient):
            raise UnknownResource(
                f"upstream {server} offers tools only", details={"upstream": server}
            )
        return server, client

    def upstream_status(self) -> dict[str, Any]:
        return {name: b.client.status for name, b in self._bindings.items()}


__all__ = ["Binding", "Catalog", "CatalogEntry", "Listing", "Pins", "Target"]
