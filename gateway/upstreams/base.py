"""What every upstream client offers the catalog and the pipeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.abc

from gateway.types import ProgressCallback, ToolResult
from gateway.upstreams.definitions import UpstreamTool

Reconnected = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class UpstreamStatus:
    connected: bool
    detail: str | None = None


class UpstreamClient(Protocol):
    name: str

    @property
    def status(self) -> UpstreamStatus: ...

    async def start(self, task_group: anyio.abc.TaskGroup, on_reconnect: Reconnected) -> None:
        """Connects (background work goes on `task_group`); must not raise when the
        upstream is down. After a later reconnect it awaits ``on_reconnect(name)``."""
        ...

    async def close(self) -> None: ...

    async def list_tools(self) -> list[UpstreamTool]:
        """Raises `UpstreamError` when the tool list cannot be fetched."""
        ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        headers: dict[str, str],
        idempotency_key: str | None,
        progress: ProgressCallback | None,
        timeout_s: float,
    ) -> ToolResult:
        """Runs one call. Raises `UpstreamError` subclasses for transport failures; a
        tool that ran and failed is a `ToolResult` with ``is_error``."""
        ...
