"""Roots one client answered are never served to another's calls
(gateway.upstreams.mcp_requests.relay_input).

Two upstreams behind one gateway. ``ev`` is server-everything over Streamable HTTP: it
speaks 2025-11-25 only, asks a session's client for its roots once and keeps the
answer for that session (its ``get-roots-list`` reports them); the gateway's connection
to it is one session shared by every client. ``conf`` is our conformance upstream at
2026-07-28, which asks for roots per request (``input_required``). Several clients —
two principals, and two sessions of one principal — each answering different roots,
call both in turn, twice each, in both client eras: nobody ever sees roots another
client answered. From ``conf`` each sees its own; ``ev`` is never given any (the
gateway refuses roots on the shared session, and the clients are never asked for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from tests.e2e.mcp_client import connect
from tests.support.peers import ConformanceUpstream, EverythingServer
from tests.support.processes import GatewayServer, upstream_grants, write_policy

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory: Path = tmp_path_factory.mktemp("roots")
    everything = EverythingServer.start(directory)
    conformance = ConformanceUpstream.start(directory)
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[
            {"name": "ev", "url": everything.url, "timeout_s": 10},
            {"name": "conf", "url": conformance.url, "timeout_s": 20},
        ],
        policy=write_policy(directory, upstream_grants("ev") + upstream_grants("conf")),
    ).start()
    yield server
    server.stop()
    everything.process.stop()
    conformance.process.stop()


async def _listed(gateway: GatewayServer, sub: str, root: str, era: str) -> dict[str, Any]:
    asked: list[str] = []

    async def roots(context: Any) -> types.ListRootsResult:
        asked.append(root)
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///work/{root}", name=root)])

    texts: dict[str, str] = {}
    async with connect(gateway.mcp_url, gateway.token(sub), era, list_roots_callback=roots) as c:
        for tool in ("ev__get-roots-list", "conf__test_input_required_result_list_roots"):
            result = await c.call_tool(tool, {})
            assert not result.is_error, result
            texts[tool] = " ".join(getattr(item, "text", "") for item in result.content)
    return {"texts": texts, "asked": asked}


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_no_client_ever_sees_roots_another_answered(gateway: GatewayServer, era: str):
    callers = [
        ("agent:alice", f"alice-{era}"),
        ("agent:bob", f"bob-{era}"),
        ("agent:alice", f"alice-other-session-{era}"),
    ]
    for _ in range(2):
        for sub, root in callers:
            seen = await _listed(gateway, sub, root, era)
            everything, conformance = seen["texts"].values()
            assert f"file:///work/{root}" in conformance, conformance  # asked per request
            assert "file:///work/" not in everything, everything  # nobody's roots kept
            others = [other for _, other in callers if other != root]
            for text in (everything, conformance):
                assert not any(f"file:///work/{other}" in text for other in others), text
            assert seen["asked"] == [root]  # once, by the 2026-07-28 upstream's request
