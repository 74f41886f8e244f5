"""`gateway serve` as the PostgreSQL app role of deploy/postgres/roles.sql, on a
database the owner migrated: it starts (no DDL at start), serves a call, and the audit
log it wrote verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.export import database_source
from gateway.store import create_engine, migrate
from gateway.tlog.verifier import verify_log
from tests.e2e.mcp_client import connect
from tests.support.pg_roles import PG_ADMIN_URL, RoleDatabase, role_database
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
def roles() -> Iterator[RoleDatabase]:
    with role_database(PG_ADMIN_URL) as roles:
        owner = create_engine(roles.owner_url)
        migrate(owner)
        owner.dispose()
        roles.apply_roles_script()
        yield roles


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path)
    yield server
    server.process.stop()


async def test_serve_as_app_role(
    roles: RoleDatabase, upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    gateway = GatewayServer.configure(
        tmp_path / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(tmp_path, [{"role": "agent", "tool": "up__write"}]),
        storage_url=roles.app_url,
    )
    gateway.start()
    try:
        async with connect(gateway.mcp_url, gateway.token("agent:pg"), "2026-07-28") as client:
            result = await client.call_tool("up__write", {"key": "k1", "value": "v"})
        assert not result.is_error and result.content[0].text == "wrote k1"
    finally:
        gateway.stop()
    log = gateway.log()
    assert "permission denied" not in log and "audit checkpoint at tree size" in log, log

    owner = create_engine(roles.owner_url)
    try:
        report = verify_log(database_source(owner))
    finally:
        owner.dispose()
    assert report.ok, report.faults
    assert report.size >= 3  # attempt, decision, outcome
