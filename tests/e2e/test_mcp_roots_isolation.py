"""Roots one client answered are never served to another principal's calls, nor, in
a session, to another session's (gateway.upstreams.mcp_client_input.relay_input,
gateway.upstreams.mcp_caller_sessions).

Two upstreams behind one gateway. ``ev`` is server-everything over Streamable HTTP: it
speaks 2025-11-25 only, asks a session's client for its roots once and keeps the
answer for that session (its ``get-roots-list`` reports them). ``conf`` is our
conformance upstream at 2026-07-28, which asks for roots per request
(``input_required``). Several clients — two principals, and two clients of one
principal — each answering different roots, call both in turn, twice each, in both
client eras. From ``conf`` each sees its own. From ``ev``: a 2025-11-25 client (a
session at the gateway) reaches it on an upstream session of its own and sees its own
roots (docs/decisions/0034); a 2026-07-28 client is sessionless and reaches it on the
upstream session held for its principal (docs/decisions/0043), so it sees the roots
its principal's first client answered there — its own, or, for the second client of
one principal, the first's (what two clients acting as one principal share) — and
never another principal's. Without the refusal of roots on the shared connection, or
with upstream sessions shared between principals, the first client's roots would show
in everyone's answers.
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
        ("agent:alice", f"alice-other-client-{era}"),
    ]
    # What ev reports to each: its own roots in a session; at 2026-07-28, the roots of
    # the first client of its principal (the upstream session is the principal's).
    first_of = {sub: root for sub, root in reversed(callers)}
    for _ in range(2):
        for sub, root in callers:
            seen = await _listed(gateway, sub, root, era)
            everything, conformance = seen["texts"].values()
            assert f"file:///work/{root}" in conformance, conformance  # asked per request
            kept = root if era == "legacy" else first_of[sub]
            assert f"file:///work/{kept}" in everything, everything
            others = [other for _, other in callers if other != root]
            assert not any(f"file:///work/{other}" in conformance for other in others)
            assert not any(f"file:///work/{o}" in everything for o in others if o != kept)
            # Another principal's roots: never, from either upstream.
            foreign = [other for who, other in callers if who != sub]
            assert not any(f"file:///work/{other}" in everything for other in foreign)
            # Only ever asked for its own: by the 2026-07-28 upstream per request, and by
            # its own upstream session of server-everything (a session's: each new one;
            # its principal's: once, the first client's first call).
            assert seen["asked"] and set(seen["asked"]) == {root}
            assert len(seen["asked"]) >= (2 if era == "legacy" else 1)
