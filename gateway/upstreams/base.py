"""What every upstream client offers the catalog and the pipeline, and what an MCP
upstream offers besides tools (`OfferingsClient`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio.abc
import mcp_types as types

from gateway.operations import CallerSession, ClientInput, LogSink, ProgressCallback
from gateway.types import ToolResult
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_definitions import UpstreamOfferings

Reconnected = Callable[[str], Awaitable[None]]
# Called with (upstream, the upstream's URI, the calling session whose own upstream
# session it came on, or None for the shared connection) when a subscribed resource
# was updated.
ResourceUpdated = Callable[[str, str, str | None], Awaitable[None]]


@dataclass(frozen=True)
class UpstreamStatus:
    connected: bool
    detail: str | None = None


class UpstreamClient(Protocol):
    name: str

    @property
    def status(self) -> UpstreamStatus: ...

    async def start(
        self,
        task_group: anyio.abc.TaskGroup,
        on_reconnect: Reconnected,
        on_updated: ResourceUpdated | None = None,
    ) -> None:
        """Connects (background work goes on `task_group`); must not raise when the
        upstream is down. After a later reconnect it awaits ``on_reconnect(name)``."""
        ...

    async def close(self) -> None: ...

    async def list_tools(self) -> list[UpstreamTool]:
        """Raises `UpstreamError` when the tool list cannot be fetched."""
        ...

    async def list_offerings(self) -> UpstreamOfferings:
        """Prompts, resources and templates (none for an upstream without them).
        Raises `UpstreamError` when they cannot be fetched."""
        ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        headers: dict[str, str],
        idempotency_key: str | None,
        progress: ProgressCallback | None,
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        session: CallerSession | None = None,
    ) -> ToolResult:
        """Runs one call (``session``: the caller's session at the gateway, whose own
        upstream session an MCP upstream of the 2025-11-25 era uses; docs/decisions/0034).
        Raises `UpstreamError` subclasses for transport failures; a tool that ran and
        failed is a `ToolResult` with ``is_error``."""
        ...


@runtime_checkable
class OfferingsClient(Protocol):
    """An upstream that serves prompts, resources and completions (an MCP server).
    Each returns the method's result document, rebuilt (`mcp_offerings`); each raises
    `UpstreamError` subclasses, `UpstreamRejected` for a JSON-RPC error answer."""

    async def read_resource(
        self,
        uri: str,
        *,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        session: CallerSession | None = None,
    ) -> dict[str, Any]: ...

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, str],
        *,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        session: CallerSession | None = None,
    ) -> dict[str, Any]: ...

    async def subscribe_resource(
        self,
        uri: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        session: CallerSession | None = None,
    ) -> None:
        """One more subscriber of ``uri`` (the upstream's); the upstream is asked on the
        first. Its updates go to the catalog's `ResourceUpdated` listeners."""
        ...

    async def unsubscribe_resource(self, uri: str, *, session: CallerSession | None = None) -> None:
        """One subscriber fewer; the upstream is told after the last."""
        ...

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
        *,
        headers: dict[str, str],
        timeout_s: float,
        session: CallerSession | None = None,
    ) -> dict[str, Any]: ...
