"""The long-lived parts of one gateway, built from its config: `Components` and the
`build_*` functions that assemble them (storage, audit log and its checkpoints, policy
and its decider, catalog of upstreams, pipeline, approvals) and what is built over them
(the executor, published workflows).

`gateway.app` serves them (routes, middleware, lifespan); `gateway serve`, the worker
and the commands that need a part of a gateway build them here.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import sqlalchemy as sa

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
from gateway.errors import ConfigError
from gateway.executor.deps import ExecutorDeps
from gateway.executor.service import Executor
from gateway.executor.store import RunStore
from gateway.identity import TokenVerifier, UpstreamTokenMinter, load_or_create_signing_key
from gateway.limits import Limiter, LimitStore
from gateway.pipeline import Pipeline
from gateway.pipeline_tracing import TracedPipeline
from gateway.policy import PolicyEngine
from gateway.policy.decider import Decider, DecisionQueue, TracedDecider
from gateway.policy.opa import OpaEngine
from gateway.policy.origins import build_embedded_engine
from gateway.store import create_engine, migrate
from gateway.store.shared_clock import SharedClock
from gateway.surfaces.auth import Authenticator
from gateway.surfaces.tracing import TracedAuthenticator
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
