"""An executor with real parts in this process: the recording MCP upstream (its own
process), the embedded Rego engine, the audit log and the run store on the given
database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import Engine

from gateway.approvals import ApprovalService
from gateway.audit import AuditLog
from gateway.config import ApprovalsConfig, ExecutorConfig, McpHttpUpstream
from gateway.executor.deps import ExecutorDeps
from gateway.executor.service import Executor
from gateway.executor.store import RunStore
from gateway.limits import Limiter, LimitStore
from gateway.pipeline import Pipeline
from gateway.policy.embedded import EmbeddedEngine
from gateway.store import create_engine, migrate
from gateway.store.shared_clock import SharedClock
from gateway.types import Principal
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.mcp_client import McpUpstream
from gateway.upstreams.pinning import PinGuard
from gateway.upstreams.pins import PinStore
from tests.support.deciding import decider_for
from tests.support.processes import write_policy
from tests.support.waiting import eventually_async

AGENT = Principal(sub="agent:planner", iss="https://issuer.test", roles=("agent",))
APPROVER = Principal(sub="user:approver", iss="https://issuer.test", roles=("approver",))

GRANTS = [
    {"role": "agent", "tool": "up__effect"},
    {"role": "agent", "tool": "up__flaky"},
    # Plans see no arguments; each step's tools/call decision checks this constraint.
    {
        "role": "agent",
        "tool": "up__echo",
        "constraints": [{"kind": "max_length", "argument": "text", "max": 40}],
    },
    {"role": "agent", "tool": "up__fail"},
    {"role": "agent", "tool": "up__slow"},
    {"role": "agent", "tool": "up__login"},
    {"role": "agent", "tool": "up__rendezvous"},
    # Allowed once a human approves.
    {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
]


@dataclass
class Parts:
    executor: Executor
    database: Engine
    audit: AuditLog
    approvals: ApprovalService

    @property
    def store(self) -> RunStore:
        return self.executor.store

    async def submit(
        self, plan: dict[str, Any], inputs: dict[str, Any] | None = None, **kwargs: Any
    ) -> str:
        run_id, _ = await self.executor.submit(
            kwargs.pop("principal", AGENT),
            plan,
            inputs,
            request_id="req_test",
            transport="rest",
            **kwargs,
        )
        return run_id

    async def wait(self, run_id: str) -> dict[str, Any]:
        """The run once it finished."""
        return await self.view_once(run_id, "succeeded", "failed", "cancelled")

    async def view_once(self, run_id: str, *statuses: str) -> dict[str, Any]:
        """The run's view once its status is one of ``statuses``."""

        async def reached() -> dict[str, Any] | None:
            view = await self.executor.get(run_id, None)
            return view if view["status"] in statuses else None

        return await eventually_async(reached, f"run {run_id} {' or '.join(statuses)}")


def upstream_binding(url: str, risk: dict[str, str] | None = None) -> Binding:
    # A generous call timeout: a call that must wait for others (up__rendezvous) waits
    # as long as a busy machine takes to make them. Step timeouts are tested per step.
    config = McpHttpUpstream.model_validate(
        {"name": "up", "url": url, "timeout_s": 60, "risk": {"tools": risk or {}}}
    )
    credentials = CredentialProvider(
        "up", config.credentials, default_audience=url, mint=lambda *a: ""
    )
    client = McpUpstream(config, static_headers={}, connect_timeout_s=5)
    return Binding(client=client, config=config, credentials=credentials)


@contextlib.asynccontextmanager
async def executor_parts(
    database_url: str,
    directory: Path,
    upstream_url: str,
    *,
    workers: int = 1,
    grants: list[dict[str, Any]] | None = None,
    policy_settings: dict[str, Any] | None = None,
    risk: dict[str, str] | None = None,
    **config: Any,
) -> AsyncIterator[Parts]:
    database = create_engine(database_url)
    migrate(database)
    # The origin GatewayServer configures, so worker processes can share the database.
    audit = AuditLog(database, "test.gateway/audit")
    await audit.start()
    policy = write_policy(directory, grants or GRANTS, **(policy_settings or {}))
    decider = decider_for(EmbeddedEngine(policy))
    pins = PinGuard(PinStore(database), audit, configured={})
    catalog = Catalog([upstream_binding(upstream_url, risk)], pins=pins, pin_sync_interval_s=0)
    # A lease no busy machine lets lapse by accident (takeover is tested by expiring
    # leases on purpose, or with processes of their own).
    settings = ExecutorConfig.model_validate({"lease_s": 60, "poll_s": 0.05, **config})
    try:
        async with anyio.create_task_group() as tasks:
            await catalog.connect(tasks)
            await catalog.start(tasks, refresh_interval_s=0)
            http = httpx.AsyncClient()
            approvals = ApprovalService(
                database=database,
                audit=audit,
                decider=decider,
                config=ApprovalsConfig(),
                public_url="http://gateway.test",
                http=http,
            )
            await approvals.start()
            limiter = Limiter(LimitStore(database), SharedClock(database), lease_s=60)
            pipeline = Pipeline(
                catalog=catalog, decider=decider, audit=audit, approvals=approvals, limiter=limiter
            )
            deps = ExecutorDeps(
                store=RunStore(database),
                pipeline=pipeline,
                catalog=catalog,
                audit=audit,
                decider=decider,
                config=settings,
                approvals=approvals,
            )
            executor = Executor(deps)
            async with executor.running(workers):
                yield Parts(executor, database, audit, approvals)
            await approvals.close()
            await http.aclose()
            await catalog.close()
            tasks.cancel_scope.cancel()
    finally:
        await audit.close()
        database.dispose()
