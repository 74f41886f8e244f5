"""Approvals across gateway processes on one PostgreSQL database: a decision made
through one process releases a call held by another, a pending approval survives a
restart, and an approved call runs once however many processes retry it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_types import CallToolResult

from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import connect
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually_async

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

# Far longer than a test takes to decide: a held call ends by a decision, never by
# racing the hold on a busy machine; a call nobody decides is made with `Prefer: wait=0`.
HOLD_S = 120
GRANTS = [{"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}}]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("approvals-pg")


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
    policy = write_policy(workdir, GRANTS)
    servers = []
    for name in ("a", "b"):
        server = GatewayServer.configure(
            workdir / name,
            upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
            policy=policy,
            storage_url=pg_database_url,
        )
        server.config["approvals"] = {"hold_s": HOLD_S, "sweep_interval_s": 1}
        servers.append(server)
    a, b = servers
    # One token issuer for both, as in a real deployment.
    b.issuer_key = a.issuer_key
    b.config["identity"]["issuers"] = a.config["identity"]["issuers"]
    a.start()
    b.start()
    yield a, b
    for server in (a, b):
        if server.process and server.process.popen.poll() is None:
            server.stop()


async def call(gateway: GatewayServer, arguments: dict[str, Any]) -> CallToolResult:
    async with connect(gateway.mcp_url, gateway.token("agent:pg"), "2026-07-28") as client:
        return await client.call_tool("up__write", arguments)


async def api(gateway: GatewayServer, method: str, path: str) -> httpx.Response:
    token = gateway.token("user:bob", roles=("approver",))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        return await http.request(method, path, headers={"Authorization": f"Bearer {token}"})


async def pending_for(gateway: GatewayServer, key: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        listed = (await api(gateway, "GET", "/v1/approvals?status=pending")).json()
        for approval in listed["approvals"]:
            if approval["arguments"].get("key") == key:
                return dict(approval)
        return None

    return await eventually_async(found, f"a pending approval for {key}")


def ran(upstream: McpUpstreamServer, key: str) -> int:
    return sum(1 for c in upstream.calls() if c["arguments"].get("key") == key)


def meta(result: CallToolResult) -> dict[str, Any]:
    assert result.meta is not None
    details: dict[str, Any] = result.meta[META_KEY]
    return details


async def test_a_decision_through_one_process_releases_a_hold_on_another(
    gateways: tuple[GatewayServer, GatewayServer], upstream: McpUpstreamServer
) -> None:
    a, b = gateways
    key = f"cross-{uuid.uuid4().hex[:8]}"
    held = asyncio.create_task(call(a, {"key": key, "value": "v"}))
    approval = await pending_for(b, key)  # B sees what A requested: one database
    decided = await api(b, "POST", f"/v1/approvals/{approval['id']}/approve")
    assert decided.status_code == 200, decided.text
    result = await asyncio.wait_for(held, HOLD_S + 5)
    # It ran in the held request: released by B's decision (seen by A's polling of the
    # database), within the hold.
    assert not result.is_error and result.content[0].text == f"wrote {key}"
    assert meta(result)["approval_id"] == approval["id"]

    # Retries through both processes at once: still one execution.
    retries = await asyncio.gather(
        *(call(gateway, {"key": key, "value": "v"}) for gateway in (a, b, a, b))
    )
    assert all(r.content[0].text == f"wrote {key}" for r in retries)
    assert all("replay_of" in meta(r) for r in retries)
    assert ran(upstream, key) == 1


async def test_a_pending_approval_survives_a_restart(
    gateways: tuple[GatewayServer, GatewayServer], upstream: McpUpstreamServer
) -> None:
    a, _ = gateways
    key = f"restart-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=a.url, timeout=60) as http:
        first = await http.post(
            "/v1/tools/up__write/call",
            json={"arguments": {"key": key, "value": "v"}},
            headers={**a.headers(sub="agent:pg"), "Prefer": "wait=0"},
        )
    assert first.status_code == 202 and first.json()["status"] == "pending_approval"
    approval_id = first.json()["approval_id"]

    a.stop()  # SIGTERM: a graceful shutdown, as an operator would restart it
    a.start()
    shown = await api(a, "GET", f"/v1/approvals/{approval_id}")
    assert shown.status_code == 200 and shown.json()["status"] == "pending"
    assert (await api(a, "POST", f"/v1/approvals/{approval_id}/approve")).status_code == 200
    retry = await call(a, {"key": key, "value": "v"})
    assert not retry.is_error and retry.content[0].text == f"wrote {key}"
    assert meta(retry)["approval_id"] == approval_id
    assert ran(upstream, key) == 1
