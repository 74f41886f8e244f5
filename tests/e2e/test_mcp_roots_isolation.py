"""Roots one client answered are never served to another's calls
(gateway.upstreams.mcp_own_session).

The upstream is server-everything over Streamable HTTP, which speaks 2025-11-25 only,
asks a session's client for its roots once and keeps the answer for that session
(its ``get-roots-list`` tool reports them). Behind the gateway its connection is
shared; several clients — two principals, and two sessions of one principal — each
answering different roots, call ``get-roots-list`` in turn, twice each, in both eras:
each must see only the roots it answered itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from tests.e2e.mcp_client import connect
from tests.support.peers import EverythingServer
from tests.support.processes import GatewayServer, upstream_grants, write_policy

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory: Path = tmp_path_factory.mktemp("roots")
    everything = EverythingServer.start(directory)
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[{"name": "ev", "url": everything.url, "timeout_s": 10}],
        policy=write_policy(directory, upstream_grants("ev")),
    ).start()
    yield server
    server.stop()
    everything.process.stop()


def _roots(name: str) -> Any:
    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///work/{name}", name=name)])

    return roots


async def _listed(gateway: GatewayServer, sub: str, root: str, era: str) -> str:
    async with connect(
        gateway.mcp_url, gateway.token(sub), era, list_roots_callback=_roots(root)
    ) as c:
        result = await c.call_tool("ev__get-roots-list", {})
    assert not result.is_error, result
    return " ".join(getattr(item, "text", "") for item in result.content)


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_each_client_sees_only_the_roots_it_answered(gateway: GatewayServer, era: str):
    callers = [
        ("agent:alice", f"alice-{era}"),
        ("agent:bob", f"bob-{era}"),
        ("agent:alice", f"alice-other-session-{era}"),
    ]
    for _ in range(2):
        for sub, root in callers:
            text = await _listed(gateway, sub, root, era)
            assert f"file:///work/{root}" in text, text
            others = [other for _, other in callers if other != root]
            assert not any(f"file:///work/{other}" in text for other in others), text
