"""Builds the gateway's ASGI app from a `Config`: routes, middleware, lifespan, over the
components `gateway.components` builds.

Everything is wired here and only here: routes and middleware are declared once, in
order, so what runs in front of what can be read in one place.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import anyio
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import telemetry
from gateway.components import Components, build_components, build_executor, build_workflows
from gateway.config import Config
from gateway.errors import GatewayError, sole_error
from gateway.executor.mcp_tools import WorkflowTools
from gateway.identity import load_or_create_signing_key
from gateway.policy.conformance_memo import ConformanceMemo
from gateway.policy.lifecycle import start_policy
from gateway.policy.reload import build_reloader
from gateway.relays import Relays
from gateway.store import UNREACHABLE
from gateway.surfaces import audit_api
from gateway.surfaces.approvals_api import ApprovalsApi
from gateway.surfaces.audit_explorer import AuditExplorer
from gateway.surfaces.audit_proofs import AuditProofs
from gateway.surfaces.auth import (
    METADATA_PATH,
    AuthenticationMiddleware,
    database_unreachable,
    error_handler,
)
from gateway.surfaces.console import Console
from gateway.surfaces.health import Health
from gateway.surfaces.mcp import McpEndpoint
from gateway.surfaces.mcp_relay import InputRelay
from gateway.surfaces.mcp_relay_state import StateSeal, UsedStates
from gateway.surfaces.mcp_task_store import TaskStore
from gateway.surfaces.mcp_tasks import McpTasks
from gateway.surfaces.middleware import BodyLimitMiddleware, RequestIdMiddleware
from gateway.surfaces.openapi import build_openapi
from gateway.surfaces.pins import PinRoutes
from gateway.surfaces.rest import RestSurface
from gateway.surfaces.routing import merge_methods
from gateway.surfaces.runs import RunsApi
from gateway.surfaces.tracing import TracingMiddleware
from gateway.surfaces.workflows_api import WorkflowsApi

log = logging.getLogger(__name__)


def _input_relay(parts: Components) -> InputRelay:
    """How upstreams' requests for client input reach MCP clients (docs/decisions/0019):
    states sealed under a key derived from the gateway's signing key, which every
    replica shares."""
    config = parts.config
    seal = StateSeal.from_signing_key(
        load_or_create_signing_key(config.identity.signing_key_file),
        ttl_s=config.mcp.input.timeout_s,
    )
    return InputRelay(
        Relays(parts.decider, parts.audit),
        seal,
        UsedStates(parts.database),
        parts.audit,
        timeout_s=config.mcp.input.timeout_s,
        max_waiting=config.mcp.input.max_waiting,
    )


def build_app(config: Config, components: Components | None = None) -> Starlette:
    parts = components or build_components(config)
    executor = build_executor(parts)
    workflows = build_workflows(parts, executor)
    tasks = McpTasks(
        pipeline=parts.pipeline,
        executor=executor,
        store=TaskStore(parts.database),
        audit=parts.audit,
        public_url=config.public_url,
        result_wait_s=config.approvals.hold_s,
    )
    mcp = McpEndpoint(
        parts.pipeline,
        public_url=config.public_url,
        max_body_bytes=config.limits.max_body_bytes,
        sessions=config.mcp_sessions,
        relay=_input_relay(parts),
        local_tools=WorkflowTools(executor, workflows),
        tasks=tasks,
    )
    rest = RestSurface(parts.pipeline)
    pin_routes = PinRoutes(parts.pins, approver_roles=config.pinning.approver_roles)
    console = Console()
    health = Health(
        policy=parts.policy, database_check=_database_check(parts.database), catalog=parts.catalog
    )
    # Built by its first request, not at start: no call waits for it (docs/performance.md).
    openapi = functools.cache(lambda: build_openapi(config.public_url))

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi())

    async def resource_metadata(request: Request) -> Response:
        return JSONResponse(parts.authenticator.metadata())

    async def mcp_resource_metadata(request: Request) -> Response:
        return JSONResponse(parts.authenticator.metadata(config.public_url + "/mcp"))

    async def jwks(request: Request) -> Response:
        return JSONResponse(parts.minter.jwks())

    routes = [
        Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"]),
        Route("/mcp/{upstream}", endpoint=mcp, methods=["GET", "POST", "DELETE"]),
        *pin_routes.routes(),
        *rest.routes(),
        *audit_api.routes(parts.database),
        *AuditExplorer(
            parts.database,
            origin=config.audit.origin,
            reader_roles=config.audit.reader_roles,
        ).routes(),
        *AuditProofs(parts.database, reader_roles=config.audit.reader_roles).routes(),
        *ApprovalsApi(parts.approvals, public_url=config.public_url).routes(),
        *RunsApi(executor, workflows).routes(),
        *WorkflowsApi(workflows).routes(),
        *console.routes(),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route(METADATA_PATH, resource_metadata, methods=["GET"]),
        Route(METADATA_PATH + "/mcp", mcp_resource_metadata, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
    ]
    # Outermost first: every request gets an id before anything can refuse it; nothing
    # reads a body before the caller is authenticated (protected by default).
    # Tracing, when on, is outermost: the request's span covers everything else.
    middleware = [
        *([Middleware(TracingMiddleware)] if telemetry.enabled() else []),
        Middleware(RequestIdMiddleware),
        Middleware(AuthenticationMiddleware, authenticator=parts.authenticator),
        Middleware(BodyLimitMiddleware, max_bytes=config.limits.max_body_bytes),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Workers start after the components they call through, and stop before them.
        async with running(parts), executor.running(), mcp.sessions.run():
            try:
                yield
            finally:
                await tasks.close()

    app = Starlette(
        routes=merge_methods(routes),
        middleware=middleware,
        exception_handlers={
            GatewayError: error_handler(parts.authenticator),
            **dict.fromkeys(UNREACHABLE, database_unreachable),
        },
        lifespan=lifespan,
    )
    app.state.components = parts
    app.state.executor = executor
    app.state.workflows = workflows
    return app


@contextlib.asynccontextmanager
async def running(parts: Components) -> AsyncIterator[None]:
    """Starts the components in dependency order and stops them in reverse.

    On shutdown, upstream connections close first (no new forwards), then the audit
    log drains every queued append before the database is released.
    """
    await parts.audit.start()
    await parts.checkpointer.start()
    reloader = None
    try:
        async with anyio.create_task_group() as tasks:
            try:
                # Before anything serves: a policy failing its conformance cases (under
                # `enforce`) stops the start here, and the load is in the audit log
                # first. The upstreams connect meanwhile: on a restart these are the
                # two long waits (bench/start_time.py), and neither needs the other.
                async with anyio.create_task_group() as starting:
                    starting.start_soon(parts.catalog.connect, tasks)
                    await start_policy(
                        parts.config.policy,
                        parts.policy,
                        parts.audit,
                        memo=ConformanceMemo(
                            parts.config.policy.conformance.memo_directory(parts.config.data_dir)
                        ),
                    )
                reloader = build_reloader(parts.policy, parts.audit, parts.config.policy)
                if reloader is not None:
                    await reloader.start(tasks)
                await parts.catalog.start(tasks, refresh_interval_s=parts.config.catalog_refresh_s)
                await parts.approvals.start()  # the expiry sweeper (needs the audit log)
                log.info(
                    "gateway ready: %d tools from %d upstreams",
                    len(parts.catalog.tools()),
                    len(parts.config.upstreams),
                )
                yield
            finally:
                if reloader is not None:
                    reloader.stop()
                await parts.catalog.close()
                tasks.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # A refused policy (or any one error) reads as itself, as it did before the
        # start ran in task groups: uvicorn prints it as the reason the start failed.
        raise sole_error(group) from None
    finally:
        with anyio.CancelScope(shield=True):
            await parts.approvals.close()  # release holds before the audit log closes
            await parts.audit.close()
            await parts.checkpointer.close()  # after the last appends: a final checkpoint
            await parts.http.aclose()
            await parts.policy.close()
            parts.pipeline.limiter.close()
            parts.database.dispose()
            await anyio.to_thread.run_sync(telemetry.flush)  # the spans of all the above


def _database_check(database: sa.Engine):
    async def check() -> None:
        def ping() -> None:
            with database.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        await anyio.to_thread.run_sync(ping)

    return check
