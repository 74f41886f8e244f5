"""Connecting the MCP SDK's own client to the gateway, in either protocol era."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ERAS = ["legacy", "2026-07-28"]  # 2025-11-25 handshake, and the sessionless era


@contextlib.asynccontextmanager
async def connect(url: str, token: str, mode: str, **options: Any) -> AsyncIterator[Client]:
    """``options`` are the `Client`'s own (callbacks, ``log_level``…)."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, mode=mode, cache=None, **options) as client:
        yield client
