"""The smaller sections of the configuration file: ``server``, ``storage``,
``limits``, ``approvals``, ``pinning``, ``mcp``, ``executor`` and ``tracing``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from gateway.config.base import Model


class RestartsConfig(Model):
    """How a server process of `server.processes` above 1 is replaced once the serve
    runs (docs/operations.md, "Processes on one host"; docs/decisions/0035)."""

    # A slot's process that exits (a crash, `kill -9`, a replacement that fails to
    # start) is replaced at most this many times within `window_s`; one more exit and
    # the serve stops, non-zero, naming the slot and the exits seen: a process that
    # keeps dying needs a person, not a loop that hides it. 0: never replace.
    limit: int = Field(5, ge=0, le=1000)
    window_s: float = Field(300.0, gt=0)
    # The first replacement starts at once; each further one within the window waits
    # twice as long as the one before, from `backoff_s` up to `backoff_max_s`, while
    # the other processes keep serving.
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)


class ServerConfig(Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # The URL agents use to reach the gateway; also the default token audience.
    public_url: str | None = None
    # Server processes sharing the port, each a whole gateway on the one database
    # (docs/operations.md, "Capacity"; docs/decisions/0035). Not the executor's
    # `executor.workers`, which are loops inside each process.
    processes: int = Field(1, ge=1, le=64)
    restarts: RestartsConfig = RestartsConfig()


class StorageConfig(Model):
    url: str = "sqlite:///var/gateway.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("only sqlite:/// and postgresql:// URLs are supported")
        return value


class LimitsConfig(Model):
    max_body_bytes: int = Field(1_048_576, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)
    upstream_connect_timeout_s: float = Field(10.0, gt=0)
    # How long a concurrency slot (docs/policies.md, "Limits") counts when the process
    # holding it does not free it (it died, or lost the database as the call ended).
    # A live process frees it when the call ends; longer than any call, approval hold
    # included, or a call still running would stop counting.
    concurrency_lease_s: float = Field(900.0, gt=0, le=86400)


# A witness's cosignature/v1 verifier key, <name>+<8 hex>+<base64(0x04 ‖ key)>; fully
# checked (type, length, key ID) when the gateway builds its witnesses.


class ApprovalsConfig(Model):
    """Human approval of calls whose decision says ``require_approval`` (docs/approvals.md)."""

    # Off: such calls are refused with code approval_required, as before approvals existed.
    enabled: bool = True
    # How long a call waits for a decision before answering pending_approval.
    hold_s: float = Field(20.0, ge=0, le=600)
    # Lifetime of an approval when the policy's obligation names no approval_ttl_s.
    default_ttl_s: int = Field(3600, gt=0)
    # Optional webhook told of each new approval request (failures are only logged).
    webhook_url: str | None = None
    webhook_format: Literal["json", "slack"] = "json"
    # How often pending approvals past their expiry are marked expired.
    sweep_interval_s: float = Field(5.0, gt=0)


class PinningConfig(Model):
    """Pinned tool definitions (architecture.md §7, docs/approvals.md)."""

    # Roles whose holders may approve a changed tool definition (REST, console, CLI).
    approver_roles: list[str] = Field(["approver"], min_length=1)
    # How often each process looks for pin changes made through other processes
    # (approvals); a tool list refresh checks the pins as well.
    sync_interval_s: float = Field(5.0, gt=0)


class McpSessionsConfig(Model):
    """Stateful sessions (``Mcp-Session-Id``) for 2025-11-25 clients on `/mcp` and
    `/mcp/{upstream}` (docs/mcp.md, "Sessions"; docs/decisions/0018)."""

    # On: every 2025-11-25 initialize opens a session (logging/setLevel, list-changed
    # notifications, and next the relays and subscriptions, need one). Off: the
    # gateway answers those clients statelessly, as before sessions existed. Sessions
    # live in one process: with several replicas, route by Mcp-Session-Id.
    enabled: bool = True
    # Open sessions per gateway process; an initialize beyond it gets HTTP 503.
    max_sessions: int = Field(1000, ge=1)
    # A session without a request in flight (an open GET stream counts) for this long
    # is closed; its id then answers 404 and the client opens a new one.
    idle_timeout_s: float = Field(900.0, gt=0)
    # Upstream sessions held for callers, per process over every upstream: a session's
    # requests to a 2025-11-25 upstream go on an upstream session of its own, and a
    # sessionless 2026-07-28 request's on one held for its principal (a process each
    # for a stdio upstream; docs/decisions/0034, 0043). At the cap the least recently
    # used idle one makes room; with none idle such a request fails with
    # upstream_sessions_exhausted.
    max_upstream_sessions: int = Field(100, ge=1)
    # An upstream session held for a principal (docs/decisions/0043) is closed after
    # this long without a request in flight on it or a subscription (no session ends
    # it); the principal's next request there opens another, which has lost the
    # upstream's state (roots are asked again, what a tool switched on is off).
    principal_idle_timeout_s: float = Field(300.0, gt=0)


class McpInputConfig(Model):
    """Requests an upstream makes of the calling client (elicitation, sampling, roots;
    docs/mcp.md, "Requests for client input"; docs/decisions/0019)."""

    # How long a 2026-07-28 client has to come back with its answers (the sealed
    # requestState expires then), and how long a 2025-11-25 client has to answer.
    timeout_s: float = Field(300.0, gt=0)
    # 2026-07-28 requests waiting for their client's answers, per process; beyond it a
    # request runs without a way to ask its client (its upstream's requests refused).
    max_waiting: int = Field(1000, ge=1)


class McpConfig(Model):
    """The MCP endpoints (docs/mcp.md)."""

    sessions: McpSessionsConfig = McpSessionsConfig()
    input: McpInputConfig = McpInputConfig()


class ExecutorConfig(Model):
    """The durable executor (docs/workflows.md): workers inside `gateway serve` and
    `gateway worker`, and the limits every run is held to whatever its plan says."""

    # Worker loops in this process, each running one claimed run at a time (0: none;
    # runs are then executed by `gateway worker` processes only).
    workers: int = Field(1, ge=0, le=64)
    # A worker renews its lease every lease_s / 3; another takes over after lease_s.
    lease_s: float = Field(10.0, ge=0.5, le=3600)
    # The shortest pause of an idle worker between looks for runnable runs and due
    # schedules; on SQLite also how often each process looks whether another
    # connection changed the database (a run submitted through another process).
    # An idle worker otherwise sleeps until a run is submitted or an approval
    # decided (in this process, or announced by another: docs/decisions/0042), or
    # until the database's next timer (a run's wake-up, a lease running out, a
    # schedule due).
    poll_s: float = Field(0.2, gt=0, le=60)
    # The longest an idle worker sleeps without looking anyway: the bound on how late
    # work is seen whose announcement was lost (a dropped connection).
    idle_poll_s: float = Field(5.0, gt=0, le=3600)
    # Steps of one run executing at once (independent branches).
    max_parallel_steps: int = Field(4, ge=1, le=64)
    # Quotas enforced by the engine, not by the agent; a plan may ask for less.
    max_steps: int = Field(100, ge=1)
    max_tool_calls: int = Field(500, ge=1)
    max_run_s: float = Field(7 * 86400.0, gt=0)
    # Principals holding one of these roles read every run (REST, console, MCP); the
    # others read only the runs they submitted. Reading only: cancelling stays the
    # submitter's.
    viewer_roles: list[str] = Field(["approver"])


class TracingConfig(Model):
    """OpenTelemetry traces (docs/operations.md, "Traces"): off unless ``endpoint`` is set."""

    # The OTLP/HTTP collector's base URL (an OpenTelemetry Collector, Jaeger, Tempo…):
    # spans go to <endpoint>/v1/traces. Unset: no tracing, and nothing of it on the call
    # path.
    endpoint: str | None = None
    # How spans are sent: OTLP over HTTP with protobuf bodies (port 4318 by convention).
    protocol: Literal["http/protobuf"] = "http/protobuf"
    # Headers on every export, e.g. the collector's API key (${VAR} from the environment).
    headers: dict[str, str] = {}
    # service.name of every span.
    service_name: str = Field("agent-gateway", min_length=1)
    # The share of traces this gateway starts that are kept. A caller's traceparent
    # decides for its own trace: sampled there, sampled here.
    sample_ratio: float = Field(1.0, ge=0, le=1)
    # The longest one export may take; spans that cannot be sent are dropped, never
    # waited for on the call path.
    timeout_s: float = Field(10.0, gt=0, le=60)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL (the OTLP/HTTP receiver)")
        return value

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    @property
    def traces_url(self) -> str:
        """Where spans are posted: the endpoint's ``/v1/traces`` (OTLP/HTTP)."""
        assert self.endpoint is not None
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"
