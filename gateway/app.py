"""Builds the gateway's ASGI app from a `Config`: components, routes, middleware, lifespan.

Everything is wired here and only here: routes and middleware are declared once, in
order, so what runs in front of what can be read in one place.
"""

from __future__ import annotations

import contextlib
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

from gateway.audit import AuditLog
from gateway.config import Config, HttpUpstream, McpHttpUpstream, McpStdioUpstream
from gateway.identity import TokenVerifier, UpstreamTokenMinter, load_or_create_signing_key
from gateway.pipeline import Pipeline
from gateway.policy import PolicyEngine
from gateway.policy.embedded import EmbeddedEngine
from gateway.store import create_engine, migrate
from gateway.surfaces.auth import METADATA_PATH, Authenticator
from gateway.surfaces.health import Health
from gateway.surfaces.mcp import McpEndpoint
from gateway.surfaces.middleware import BodyLimitMiddleware, RequestIdMiddleware
from gateway.surfaces.openapi import build_openapi
from gateway.surfaces.rest import RestSurface
from gateway.upstreams.base import UpstreamClient
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.http_api import HttpApiUpstream
from gateway.upstreams.mcp_client import McpUpstream

log = logging.getLogger(__name__)


@dataclass
class Components:
    """The long-lived parts of one gateway, built from its config."""

    config: Config
    database: sa.Engine
    audit: AuditLog
    policy: PolicyEngine
    catalog: Catalog
    pipeline: Pipeline
    http: httpx.AsyncClient
    authenticator: Authenticator
    minter: UpstreamTokenMinter


def build_components(config: Config) -> Components:
    database = create_engine(config.storage.url)
    migrate(database)
    audit = AuditLog(database, config.audit.origin)
    policy = build_policy_engine(config)
    minter = UpstreamTokenMinter(
        load_or_create_signing_key(config.identity.signing_key_file), issuer=config.public_url
    )
    catalog = Catalog([_binding(u, config, minter) for u in config.upstreams])
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
    verifier = TokenVerifier(config.identity, config.audiences, http)
    authenticator = Authenticator(
        verifier,
        public_url=config.public_url,
        resource=config.audience,
        issuers=[i.issuer for i in config.identity.issuers],
        scopes=list(config.identity.required_scopes),
    )
    pipeline = Pipeline(
        catalog=catalog,
        policy=policy,
        audit=audit,
        policy_timeout_s=config.policy.timeout_ms / 1000,
    )
    return Components(
        config, database, audit, policy, catalog, pipeline, http, authenticator, minter
    )


def build_policy_engine(config: Config) -> PolicyEngine:
    return EmbeddedEngine(config.policy.path, extra_data=config.policy.data)


def _binding(
    upstream: McpHttpUpstream | McpStdioUpstream | HttpUpstream,
    config: Config,
    minter: UpstreamTokenMinter,
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
        )
    return Binding(client=client, config=upstream, credentials=credentials)


def build_app(config: Config, components: Components | None = None) -> Starlette:
    parts = components or build_components(config)
    mcp = McpEndpoint(
        parts.pipeline,
        parts.authenticator,
        public_url=config.public_url,
        max_body_bytes=config.limits.max_body_bytes,
    )
    rest = RestSurface(parts.pipeline, parts.authenticator)
    health = Health(
        policy=parts.policy, database_check=_database_check(parts.database), catalog=parts.catalog
    )
    openapi = build_openapi(config.public_url)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    async def resource_metadata(request: Request) -> Response:
        return JSONResponse(parts.authenticator.metadata())

    async def mcp_resource_metadata(request: Request) -> Response:
        return JSONResponse(parts.authenticator.metadata(config.public_url + "/mcp"))

    async def jwks(request: Request) -> Response:
        return JSONResponse(parts.minter.jwks())

    routes = [
        Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"]),
        *rest.routes(),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route(METADATA_PATH, resource_metadata, methods=["GET"]),
        Route(METADATA_PATH + "/mcp", mcp_resource_metadata, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
    ]
    # Outermost first: every request gets an id before anything can refuse it.
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(BodyLimitMiddleware, max_bytes=config.limits.max_body_bytes),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(parts), mcp.session_manager.run():
            yield

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.components = parts
    return app


@contextlib.asynccontextmanager
async def running(parts: Components) -> AsyncIterator[None]:
    """Starts the components in dependency order and stops them in reverse.

    On shutdown, upstream connections close first (no new forwards), then the audit
    log drains every queued append before the database is released.
    """
    await parts.audit.start()
    try:
        async with anyio.create_task_group() as tasks:
            await parts.catalog.start(tasks, refresh_interval_s=parts.config.catalog_refresh_s)
            log.info(
                "gateway ready: %d tools from %d upstreams",
                len(parts.catalog.tools()),
                len(parts.config.upstreams),
            )
            try:
                yield
            finally:
                await parts.catalog.close()
                tasks.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await parts.audit.close()
            await parts.http.aclose()
            await parts.policy.close()
            parts.database.dispose()


def _database_check(database: sa.Engine):
    async def check() -> None:
        def ping() -> None:
            with database.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        await anyio.to_thread.run_sync(ping)

    return check
