"""Limits across gateway replicas on one PostgreSQL database: two processes count one
window and one set of concurrency slots, and the slot of a replica killed with
``kill -9`` mid-call counts until its lease ends, then no longer."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.store import create_engine
from gateway.store.tables import limit_slots
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually

pytestmark = [pytest.mark.postgres]

WINDOW_S = 86400  # never ends during a test
LEASE_S = 600
LIMITS = [
    {
        "name": "echo-per-agent",
        "per": ["principal"],
        "tools": ["up__echo"],
        "calls": 4,
        "window_s": WINDOW_S,
    },
    {"name": "slow-at-once", "per": ["upstream"], "tools": ["up__slow"], "concurrent": 1},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits-pg")


@pytest.fixture(scope="module")
def upstream(workdir: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateways(
    workdir: Path, upstream: McpUpstreamServer, pg_database_url: str
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    """Two gateway processes on one fresh PostgreSQL database, trusting one issuer."""
    policy = write_policy(workdir, [{"role": "agent", "tool": "up__*"}], limits=LIMITS)
    servers = []
    for name in ("a", "b"):
        server = GatewayServer.configure(
            workdir / name,
            upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 300}],
            policy=policy,
            storage_url=pg_database_url,
        )
        server.config["limits"] = {"concurrency_lease_s": LEASE_S}
        servers.append(server)
    a, b = servers
    b.issuer_key = a.issuer_key
    b.config["identity"]["issuers"] = a.config["identity"]["issuers"]
    a.start()
    b.start()
    yield a, b
    for server in (a, b):
        if server.process and server.process.popen.poll() is None:
            server.stop()


def rest(gateway: GatewayServer, tool: str, sub: str, arguments: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": arguments},
        headers=gateway.headers(sub=sub),
        timeout=120,
    )


def test_one_window_is_counted_across_both_replicas(
    gateways: tuple[GatewayServer, GatewayServer], upstream: McpUpstreamServer
) -> None:
    a, b = gateways
    agent, text = f"agent:pg-{uuid.uuid4().hex[:6]}", f"pg-{uuid.uuid4().hex[:8]}"
    # Twelve calls at once, half through each replica: exactly four pass.
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda i: rest((a, b)[i % 2], "up__echo", agent, {"text": text}), range(12))
        )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 4 + [429] * 8, [r.text for r in answers if r.status_code >= 500]
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
    assert sum(1 for c in upstream.calls() if c["arguments"].get("text") == text) == 4
    # Whichever replica is asked next, the window is spent.
    assert rest(a, "up__echo", agent, {"text": text}).status_code == 429
    assert rest(b, "up__echo", agent, {"text": text}).status_code == 429


def test_a_killed_replicas_slot_counts_until_its_lease_ends(
    gateways: tuple[GatewayServer, GatewayServer],
    upstream: McpUpstreamServer,
    pg_database_url: str,
) -> None:
    a, b = gateways
    marker = 117.0 + uuid.uuid4().int % 1000  # the seconds of this test's slow call
    engine = create_engine(pg_database_url)
    try:
        # A call in flight through A holds the upstream's one slot.
        held: list[httpx.Response | Exception] = []

        def through_a() -> None:
            try:
                held.append(rest(a, "up__slow", "agent:one", {"seconds": marker}))
            except httpx.HTTPError as exc:  # A is killed under it
                held.append(exc)

        caller = threading.Thread(target=through_a, daemon=True)
        caller.start()
        eventually(
            lambda: any(c["arguments"].get("seconds") == marker for c in upstream.calls()),
            "the slow call reaching the upstream",
        )
        refused = rest(b, "up__slow", "agent:two", {"seconds": 0})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["details"]["kind"] == "concurrent"
        assert refused.headers["retry-after"] == "1"

        assert a.process is not None
        a.process.kill()  # kill -9: A frees nothing
        caller.join(30)
        assert held and isinstance(held[0], httpx.HTTPError)

        # The dead process's slot still counts: its lease has not ended.
        assert rest(b, "up__slow", "agent:two", {"seconds": 0}).status_code == 429
        with engine.begin() as conn:
            (slot,) = conn.execute(sa.select(limit_slots)).all()
            assert slot.expires_at - slot.acquired_at == LEASE_S
            # Leases are on the database's clock: the test ends this one by moving it
            # into the past, as time would (architecture.md §8), rather than waiting.
            conn.execute(sa.update(limit_slots).values(expires_at=slot.acquired_at - 1))

        freed = rest(b, "up__slow", "agent:two", {"seconds": 0})
        assert freed.status_code == 200, freed.text
        with engine.connect() as conn:  # B's own slot was freed when its call ended
            assert conn.scalar(sa.select(sa.func.count()).select_from(limit_slots)) == 0
    finally:
        engine.dispose()
