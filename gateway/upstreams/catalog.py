"""The tool catalog: every upstream's tools under one namespace.

The catalog owns the upstream clients for the app's lifetime, discovers their tools,
names them ``<upstream>__<tool>``, hashes their definitions, and validates arguments
against each tool's input schema. A tool the catalog cannot resolve does not exist
for the rest of the gateway.

Every refresh checks each definition against
its pin: a quarantined tool is left out of `tools` and `resolve` refuses it with
`ToolQuarantined` (it exists, but may not be called until re-approved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from gateway.config import HttpUpstream, McpHttpUpstream, McpStdioUpstream
from gateway.errors import InvalidArguments, StorageError, UnknownTool, UpstreamError
from gateway.types import ToolDefinition
from gateway.upstreams.base import UpstreamClient, UpstreamStatus
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.definitions import definition_document, to_definition
from gateway.upstreams.pinning import Seen

log = logging.getLogger(__name__)

UpstreamConfig = McpHttpUpstream | McpStdioUpstream | HttpUpstream


@dataclass(frozen=True)
class CatalogEntry:
    definition: ToolDefinition
    upstream: UpstreamClient
    config: UpstreamConfig
    credentials: CredentialProvider
    validator: Validator

    def validate(self, arguments: dict[str, Any]) -> None:
        """Raises `InvalidArguments` naming the first offending field."""
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(arguments))
        if error is None:
            return
        where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
        raise InvalidArguments(
            f"arguments do not match the input schema of {self.definition.name}: "
            f"{where}: {error.message}",
            details={"path": list(error.absolute_path), "validator": error.validator},
        )


@dataclass(frozen=True)
class Binding:
    """An upstream client with what the catalog needs to know about it."""

    client: UpstreamClient
    config: UpstreamConfig
    credentials: CredentialProvider


class Pins(Protocol):
    """What the catalog asks of pinning (`gateway.upstreams.pinning.PinGuard`)."""

    def allows(self, tool: ToolDefinition) -> bool: ...

    def verify(self, tool: ToolDefinition) -> None: ...

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
        self._entries: dict[str, CatalogEntry] = {}
        self._by_upstream: dict[str, list[str]] = {}

    async def start(
        self, task_group: anyio.abc.TaskGroup, *, refresh_interval_s: float = 60.0
    ) -> None:
        for binding in self._bindings.values():
            await binding.client.start(task_group, self.refresh)
        await self.refresh()
        if refresh_interval_s > 0:
            task_group.start_soon(self._refresh_periodically, refresh_interval_s)
        if self._pin_sync_interval_s > 0:
            task_group.start_soon(self._pins.watch, self._pin_sync_interval_s)

    async def _refresh_periodically(self, interval_s: float) -> None:
        # Doubles as a health check: an idle connection that broke is only noticed
        # when it is used, and a changed tool list only when it is read.
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

    async def refresh(self, upstream: str | None = None) -> None:
        """Re-reads tool lists. An upstream that cannot answer keeps its last known tools."""
        names = [upstream] if upstream else list(self._bindings)
        for name in names:
            binding = self._bindings[name]
            try:
                tools = await binding.client.list_tools()
            except UpstreamError as exc:
                log.warning("cannot list tools of upstream %s: %s", name, exc.message)
                continue
            entries = {}
            seen = []
            for tool in tools:
                definition = to_definition(
                    name,
                    tool,
                    risk=binding.config.risk,
                    trust_annotations=binding.config.trust_annotations,
                    labels=tuple(binding.config.labels),
                )
                try:
                    validator = _validator_for(definition.input_schema)
                except SchemaError as exc:
                    log.warning(
                        "tool %s has an invalid input schema, not offered: %s",
                        definition.name,
                        exc.message,
                    )
                    continue
                entries[definition.name] = CatalogEntry(
                    definition, binding.client, binding.config, binding.credentials, validator
                )
                seen.append(
                    Seen(definition.name, definition.definition_hash, definition_document(tool))
                )
            try:
                await self._pins.check(seen)
            except StorageError as exc:
                # Unchecked definitions are not offered: keep the last checked list.
                log.warning("cannot check tool pins of upstream %s: %s", name, exc.message)
                continue
            for old in self._by_upstream.get(name, []):
                self._entries.pop(old, None)
            self._entries.update(entries)
            self._by_upstream[name] = list(entries)

    def tools(self) -> list[ToolDefinition]:
        """The tools that may be offered: quarantined ones are left out."""
        return [e.definition for e in self._entries.values() if self._pins.allows(e.definition)]

    def resolve(self, name: str) -> CatalogEntry:
        """Raises `UnknownTool`, or `ToolQuarantined` for a tool whose definition
        changed since it was approved."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownTool(f"unknown tool {name!r}", details={"tool": name}) from None
        self._pins.verify(entry.definition)
        return entry

    def upstream_status(self) -> dict[str, UpstreamStatus]:
        return {name: b.client.status for name, b in self._bindings.items()}


def _validator_for(schema: dict[str, Any]) -> Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)
