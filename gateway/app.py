"""Builds the gateway's ASGI app from a `Config`: components, routes, middleware, lifespan.

Everything is wired here and only here: routes and middleware are declared once, in
order, so what runs in front of what can be read in one place.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import httpx
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import telemetry
from gateway.approvals import ApprovalService
from gateway.approvals.disabled import DisabledApprovals
from gateway.approvals.gate import Approvals
from gateway.audit import AuditLog, Checkpointer, DirectorySink, load_signing_keys
from gateway.audit.witnessing import WitnessEndpoint, Witnessing
from gateway.config import (
    Config,
    HttpUpstream,
    McpHttpUpstream,
    McpStdioUpstream,
    OpaPolicyConfig,
)
from gateway.errors import ConfigError, GatewayError, sole_error
from gateway.executor.deps import ExecutorDeps
from gateway.executor.mcp_tools import WorkflowTools
from gateway.executor.service import Executor
from gateway.executor.store import RunStore
from gateway.identity import TokenVerifier, UpstreamTokenMinter, load_or_create_signing_key
from gateway.limits import Limiter, LimitStore
from gateway.pipeline import Pipeline
from gateway.pipeline_tracing import TracedPipeline
from gateway.policy import PolicyEngine
from gateway.policy.conformance_memo import ConformanceMemo
from gateway.policy.decider import Decider, DecisionQueue, TracedDecider
from gateway.policy.lifecycle import start_policy
from gateway.policy.opa import OpaEngine
from gateway.policy.origins import build_embedded_engine
from gateway.policy.reload import build_reloader
from gateway.relays import Relays
from gateway.store import UNREACHABLE, create_engine, migrate
from gateway.store.shared_clock import SharedClock
from gateway.surfaces import audit_api
from gateway.surfaces.approvals_api import ApprovalsApi
from gateway.surfaces.audit_explorer import AuditExplorer
from gateway.surfaces.audit_proofs import AuditProofs
from gateway.surfaces.auth import (
    METADATA_PATH,
    AuthenticationMiddleware,
    Authenticator,
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
from gateway.surfaces.tracing import TracedAuthenticator, TracingMiddleware
from gateway.surfaces.workflows_api import WorkflowsApi
from gateway.tlog.cosignature import WitnessKey
from gateway.upstreams.base import UpstreamClient
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.http_api import HttpApiUpstream
from gateway.upstreams.mcp_caller_sessions import SessionSlots
from gateway.upstreams.mcp_client import McpUpstream
from gateway.upstreams.mcp_stdio import StdioStarts
from gateway.upstreams.pinning import PinGuard, configured_pins
from gateway.upstreams.pins import PinStore
from gateway.workflows.service import Workflows
from gateway.workflows.store import WorkflowStore

log = logging.getLogger(__name__)


@dataclass
class Components:
    """The long-lived parts of one gateway, built from its config."""

    config: Config
    database: sa.Engine
    audit: AuditLog
    policy: PolicyEngine
    # The policy as every caller asks it: deadline and bounded queue in front of it.
    decider: Decider
    catalog: Catalog
    pipeline: Pipeline
    http: httpx.AsyncClient
    authenticator: Authenticator
    minter: UpstreamTokenMinter
    # The approvals engine, or its null object with approvals.enabled: false.
    approvals: Approvals
    # Pinned tool definitions (the catalog checks them; approvers release changes).
    pins: PinGuard
    # Signs checkpoints of the audit log and publishes them outside the database.
    checkpointer: Checkpointer


def build_components(config: Config, stdio: StdioStarts | None = None) -> Components:
    """``stdio``: stdio upstream processes started ahead (`gateway.upstreams.mcp_stdio`)."""
    database = create_engine(config.storage.url)
    migrate(database)
    audit = AuditLog(database, config.audit.origin)
    checkpointer = Checkpointer(
        database,
        config.audit.origin,
        # With keys retained by `audit rotate-key`: each signs while the record allows.
        load_signing_keys(config.audit.signing_key_file, config.audit.origin),
        every_entries=config.audit.checkpoint_every_entries,
        every_seconds=config.audit.checkpoint_every_s,
        sinks=[DirectorySink(config.audit.checkpoint_directory(config.data_dir))],
        witnessing=build_witnessing(config, database),
    )
    checkpointer.follow(audit)  # idle, it sleeps until this process appends (0042)
    policy = build_policy_engine(config)
    decider = build_decider(config, policy)
    minter = UpstreamTokenMinter(
        load_or_create_signing_key(config.identity.signing_key_file), issuer=config.public_url
    )
    pins = PinGuard(PinStore(database), audit, configured=configured_pins(config))
    # Upstream sessions held for callers, bounded over every upstream (0034, 0043).
    slots = SessionSlots(
        config.mcp.sessions.max_upstream_sessions,
        principal_idle_s=config.mcp.sessions.principal_idle_timeout_s,
    )
    starts = stdio or StdioStarts()  # none ahead: each started by its first connection
    catalog = Catalog(
        [_binding(u, config, minter, slots, starts) for u in config.upstreams],
        pins=pins,
        pin_sync_interval_s=config.pinning.sync_interval_s,
    )
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
    verifier = TokenVerifier(config.identity, config.audiences, http)
    # Tracing on (gateway/telemetry.py): the same components, with spans; off, the
    # plain ones, so the call path pays nothing for tracing.
    traced = telemetry.enabled()
    authenticator = (TracedAuthenticator if traced else Authenticator)(
        verifier,
        public_url=config.public_url,
        resource=config.audience,
        issuers=[i.issuer for i in config.identity.issuers],
        scopes=list(config.identity.required_scopes),
    )
    approvals = _approval_service(config, database, audit, decider, http)
    # Limits policy puts on calls, counted in the database every replica shares, on
    # its clock (docs/decisions/0031).
    limiter = Limiter(
        LimitStore(database),
        SharedClock(database),
        lease_s=config.limits.concurrency_lease_s,
    )
    pipeline = (TracedPipeline if traced else Pipeline)(
        catalog=catalog, decider=decider, audit=audit, approvals=approvals, limiter=limiter
    )
    return Components(
        config=config,
        database=database,
        audit=audit,
        policy=policy,
        decider=decider,
        catalog=catalog,
        pipeline=pipeline,
        http=http,
        authenticator=authenticator,
        minter=minter,
        approvals=approvals,
        pins=pins,
        checkpointer=checkpointer,
    )


def witness_endpoints(config: Config) -> list[WitnessEndpoint]:
    """The witnesses of audit.witnesses, their keys fully checked (type 0x04, key ID).
    Raises ConfigError naming the bad key (`gateway check-config` runs this too)."""
    endpoints = []
    for index, witness in enumerate(config.audit.witnesses):
        try:
            key = WitnessKey.parse(witness.key)
        except ValueError as exc:
            raise ConfigError(f"audit.witnesses[{index}].key: {exc}") from None
        endpoints.append(WitnessEndpoint(key, witness.url, witness.timeout_s))
    return endpoints


def build_witnessing(config: Config, database: sa.Engine) -> Witnessing | None:
    """The witnesses of audit.witnesses, or None when none is configured."""
    endpoints = witness_endpoints(config)
    return Witnessing(database, endpoints) if endpoints else None


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


def _approval_service(
    config: Config,
    database: sa.Engine,
    audit: AuditLog,
    decider: Decider,
    http: httpx.AsyncClient,
) -> Approvals:
    if not config.approvals.enabled:
        return DisabledApprovals()
    return ApprovalService(
        database=database,
        audit=audit,
        decider=decider,
        config=config.approvals,
        public_url=config.public_url,
        http=http,
    )


def build_policy_engine(config: Config) -> PolicyEngine:
    """The engine the config names. Neither contacts anything: an OPA engine connects on
    its first decision (or readiness probe), so a gateway starts while OPA is down and
    denies until it is up."""
    if isinstance(config.policy, OpaPolicyConfig):
        return OpaEngine(config.policy)
    return build_embedded_engine(config.policy)


def build_executor(parts: Components) -> Executor:
    """The executor over a gateway's components (its pipeline, catalog, audit log)."""
    deps = ExecutorDeps(
        store=RunStore(parts.database),
        pipeline=parts.pipeline,
        catalog=parts.catalog,
        audit=parts.audit,
        decider=parts.decider,
        config=parts.config.executor,
        approvals=parts.approvals,
    )
    return Executor(deps)


def build_workflows(parts: Components, executor: Executor) -> Workflows:
    """Published workflows over the executor that runs them."""
    return Workflows(
        store=WorkflowStore(parts.database),
        executor=executor,
        decider=parts.decider,
        audit=parts.audit,
    )


def build_decider(config: Config, engine: PolicyEngine) -> Decider:
    """The engine behind its deadline and bounded queue (policy.timeout_ms, policy.queue)."""
    timeout_ms = config.policy.timeout_ms
    queue = config.policy.queue
    return (TracedDecider if telemetry.enabled() else Decider)(
        engine,
        timeout_s=timeout_ms / 1000,
        queue=DecisionQueue(
            concurrency=queue.concurrency,
            size=queue.size,
            wait_s=(queue.wait_ms or timeout_ms) / 1000,
        ),
    )


def _binding(
    upstream: McpHttpUpstream | McpStdioUpstream | HttpUpstream,
    config: Config,
    minter: UpstreamTokenMinter,
    slots: SessionSlots,
    stdio: StdioStarts,
) -> Binding:
    default_audience = (
        upstream.base_url
        if isinstance(upstream, HttpUpstream)
        else (upstream.url if isinstance(upstream, McpHttpUpstream) else upstream.name)
    )
    credentials = CredentialProvider(
        upstream.name, upstream.credentials, default_audience=default_audience, mint=minter.mint
    )
    connect_timeout_s = config.limits.upstream_connect_timeout_s
    client: UpstreamClient
    if isinstance(upstream, HttpUpstream):
        client = HttpApiUpstream(
            upstream,
            static_headers=credentials.static_headers(),
            connect_timeout_s=connect_timeout_s,
        )
    else:
        client = McpUpstream(
            upstream,
            static_headers=credentials.static_headers(),
            stdio_env=credentials.stdio_env(),
            connect_timeout_s=connect_timeout_s,
            slots=slots,
            stdio=stdio,
        )
    return Binding(client=client, config=upstream, credentials=credentials)


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
