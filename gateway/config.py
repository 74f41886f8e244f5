"""The configuration file: pydantic models of its YAML, and the one loader.

Every key is declared here with its default. Unknown keys are errors (a typo must not
silently disable a security setting). `load_config` turns every validation problem
into a `ConfigError` whose message names the key path and the problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError

# Algorithms accepted unless the config widens the list. HMAC and "none" can never be
# configured: a shared secret cannot identify an agent, and "none" identifies nobody.
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class IssuerConfig(Model):
    issuer: str = Field(min_length=1)
    jwks_url: str | None = None
    key_files: list[Path] = []
    algorithms: list[str] = list(DEFAULT_ALGORITHMS)

    @field_validator("algorithms")
    @classmethod
    def _safe_algorithms(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ALLOWED_ALGORITHMS]
        if bad:
            raise ValueError(
                f"algorithm(s) {bad} not allowed; choose from {sorted(ALLOWED_ALGORITHMS)}"
                " (HMAC and 'none' are never accepted)"
            )
        if not value:
            raise ValueError("at least one algorithm is required")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        if bool(self.jwks_url) == bool(self.key_files):
            raise ValueError("give exactly one of jwks_url or key_files")
        return self


class IdentityConfig(Model):
    # The gateway's own resource identifier (RFC 9728 "resource"); tokens must carry it
    # in "aud". Defaults to server.public_url.
    audience: str | None = None
    issuers: list[IssuerConfig] = Field(min_length=1)
    leeway_s: int = Field(30, ge=0, le=300)
    roles_claim: str = "roles"
    tenant_claim: str = "tenant"
    # Scopes every token must carry to use the gateway at all (403 otherwise).
    required_scopes: list[str] = []
    # JWKS refresh on an unknown kid happens at most this often per issuer.
    jwks_min_refresh_s: float = Field(30.0, ge=0)
    jwks_cache_s: float = Field(600.0, gt=0)
    # The gateway's own Ed25519 key: mints upstream tokens (public half at
    # /.well-known/jwks.json). Generated on first start when missing.
    signing_key_file: Path = Path("var/keys/gateway-signing.pem")

    @model_validator(mode="after")
    def _unique_issuers(self) -> IdentityConfig:
        # Tokens are matched to an issuer entry by their "iss"; two entries with the same
        # issuer would make the choice of keys and algorithms ambiguous.
        names = [i.issuer for i in self.issuers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"issuers must be unique; repeated: {dupes}")
        return self


class ConformanceConfig(Model):
    """The policy's conformance cases (architecture.md §5): run at start and before a reload
    is accepted."""

    # enforce: refuse to serve (or to reload) on a mismatch; warn: log it; off: skip.
    on_start: Literal["enforce", "warn", "off"] = "enforce"
    # Default: the "conformance" folder inside the policy folder.
    path: Path | None = None
    # Where passed runs are remembered (gateway.policy.conformance_memo); default:
    # <data_dir>/conformance. Dev mode shares one per user across data folders.
    memo_dir: Path | None = None

    def memo_directory(self, data_dir: Path) -> Path:
        return self.memo_dir if self.memo_dir is not None else data_dir / "conformance"


class DecisionQueueConfig(Model):
    """The bounded queue in front of the engine (gateway.policy.decider): a decision
    that cannot start within ``wait_ms`` (default: the engine's ``timeout_ms``), or
    finds ``size`` others waiting, is answered 503 with Retry-After, not denied."""

    concurrency: int = Field(8, ge=1, le=1024)  # evaluations at once
    size: int = Field(256, ge=0)  # decisions waiting at most
    wait_ms: int | None = Field(None, gt=0)


class BundleKeyConfig(Model):
    """A public key that may sign policy bundles (PEM file)."""

    algorithm: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    key_file: Path
    # The scope the signature must claim when policy.bundle.signing.scope is unset.
    scope: str | None = None


class BundleSigningConfig(Model):
    """How a bundle's .signatures.json is checked (OPA's bundle-signing format)."""

    # Key id -> key. The id is the JWT's "kid" (`opa build --signing-key` writes
    # "default" unless told otherwise) unless `keyid` pins one.
    keys: dict[str, BundleKeyConfig] = Field(min_length=1)
    keyid: str | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _known_keyid(self) -> BundleSigningConfig:
        if self.keyid is not None and self.keyid not in self.keys:
            raise ValueError(f"keyid {self.keyid!r} is not one of keys {sorted(self.keys)}")
        return self


class BundlePollingConfig(Model):
    """How often a bundle server is asked for a new revision (with its ETag), as OPA
    polls: a random delay between the two bounds."""

    min_delay_s: float = Field(60.0, gt=0)
    max_delay_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BundlePollingConfig:
        if self.max_delay_s < self.min_delay_s:
            raise ValueError("max_delay_s must be at least min_delay_s")
        return self


class BundleConfig(Model):
    """A prebuilt OPA bundle (`opa build -b -t wasm …`), from a file or a bundle server."""

    file: Path | None = None
    url: str | None = None
    polling: BundlePollingConfig = BundlePollingConfig()
    # An HTTP request for the bundle taking longer than this fails (the policy in force stays).
    timeout_s: float = Field(30.0, gt=0)
    signing: BundleSigningConfig | None = None
    # Accept bundles without a signature. Unsafe: whoever can write the file or answer
    # for the URL decides every call. For development only.
    allow_unsigned: bool = False

    @model_validator(mode="after")
    def _one_source_and_a_trust_decision(self) -> BundleConfig:
        if (self.file is None) == (self.url is None):
            raise ValueError("give exactly one of file or url")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError("url must be an http:// or https:// URL")
        if (self.signing is None) == (not self.allow_unsigned):
            raise ValueError(
                "give signing (the keys that may sign the bundle), or allow_unsigned: true "
                "to accept unsigned bundles (unsafe), not both"
            )
        return self


class EmbeddedPolicyConfig(Model):
    engine: Literal["embedded"] = "embedded"
    path: Path = Path("policies")
    # Extra data merged under data.* besides the data.json files in `path`.
    data: dict[str, Any] = {}
    # The decision deadline, from the moment an evaluation starts: an evaluation still
    # running then is interrupted (a deny).
    timeout_ms: int = Field(500, gt=0)
    queue: DecisionQueueConfig = DecisionQueueConfig()
    # Linear memory one evaluation may use (MiB); past it the evaluation is stopped (a deny).
    memory_mb: int = Field(256, ge=1, le=4096)
    # The OPA binary that compiles `path` to Wasm; default $GATEWAY_OPA, else `opa` on PATH.
    opa_binary: Path | None = None
    # Serve a prebuilt bundle instead of compiling `path` (which then only locates the
    # default conformance cases, unless conformance.path is set).
    bundle: BundleConfig | None = None
    # Keep compiled Wasm modules here, so a restart or reload of the same policy skips
    # compiling it (gateway.policy.module_cache). Whoever can write this folder can run
    # code in the gateway: only a folder that is the gateway's alone. Default: none.
    module_cache_dir: Path | None = None
    # Reload when a file in `path` changes (SIGHUP always reloads).
    watch: bool = True
    watch_interval_s: float = Field(1.0, gt=0)
    conformance: ConformanceConfig = ConformanceConfig()


class OpaPolicyConfig(Model):
    """Decisions by an OPA server (a sidecar): POST {url}/v1/data/gateway/decision."""

    engine: Literal["opa"]
    url: str = "http://127.0.0.1:8181"
    # The decision deadline, from the moment an evaluation starts.
    timeout_ms: int = Field(200, gt=0)
    queue: DecisionQueueConfig = DecisionQueueConfig()
    # The policy folder the OPA server serves: where its conformance cases live, and
    # what `gateway policy push` uploads to a development server.
    path: Path | None = None
    conformance: ConformanceConfig = ConformanceConfig()


def _engine_discriminator(value: Any) -> str:
    engine = value.get("engine", "embedded") if isinstance(value, dict) else value.engine
    return engine if engine in ("embedded", "opa") else "embedded"


PolicyConfig = Annotated[
    Annotated[EmbeddedPolicyConfig, Tag("embedded")] | Annotated[OpaPolicyConfig, Tag("opa")],
    Discriminator(_engine_discriminator),
]


class StorageConfig(Model):
    url: str = "sqlite:///var/gateway.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("only sqlite:/// and postgresql:// URLs are supported")
        return value


class NoCredentials(Model):
    mode: Literal["none"] = "none"


class StaticCredentials(Model):
    """A secret the admin gives the gateway for this upstream (never the agent's token)."""

    mode: Literal["static"]
    env: str | None = None
    file: Path | None = None
    header: str = "Authorization"
    prefix: str = "Bearer "

    @model_validator(mode="after")
    def _one_source(self) -> StaticCredentials:
        if bool(self.env) == bool(self.file):
            raise ValueError("give exactly one of env or file")
        return self


class MintedCredentials(Model):
    """A short-lived JWT minted per call: sub = the agent, act chain + the gateway."""

    mode: Literal["jwt"]
    audience: str | None = None  # defaults to the upstream's URL
    ttl_s: int = Field(60, gt=0, le=300)
    header: str = "Authorization"


Credentials = Annotated[
    NoCredentials | StaticCredentials | MintedCredentials, Field(discriminator="mode")
]


class RiskConfig(Model):
    default: Literal["low", "medium", "high"] | None = None
    tools: dict[str, Literal["low", "medium", "high"]] = {}


class UpstreamBase(Model):
    name: str = Field(pattern=NAME_PATTERN)
    credentials: Credentials = NoCredentials()
    risk: RiskConfig = RiskConfig()
    timeout_s: float = Field(30.0, gt=0)
    labels: list[str] = []
    # Annotations from this upstream are only trusted for risk when the admin says so.
    trust_annotations: bool = False
    # Definition hashes approved in advance, by upstream tool name (docs/approvals.md):
    # such a tool is pinned to this hash, and quarantined whenever it differs.
    pins: dict[str, str] = {}

    @field_validator("pins")
    @classmethod
    def _sha256_pins(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(tool for tool, digest in value.items() if not _SHA256.fullmatch(digest))
        if bad:
            raise ValueError(f"pins of {bad} must be SHA-256 hex digests (64 lowercase hex)")
        return value


class McpHttpUpstream(UpstreamBase):
    kind: Literal["mcp"] = "mcp"
    transport: Literal["streamable_http"] = "streamable_http"
    url: str
    headers: dict[str, str] = {}


class McpStdioUpstream(UpstreamBase):
    kind: Literal["mcp"] = "mcp"
    transport: Literal["stdio"]
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = {}
    cwd: Path | None = None

    @model_validator(mode="after")
    def _no_minted_tokens(self) -> McpStdioUpstream:
        if isinstance(self.credentials, MintedCredentials):
            raise ValueError("credentials mode 'jwt' needs an HTTP upstream, not stdio")
        return self


class HttpTool(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    # Path and query placeholders, e.g. "/repos/{owner}/{repo}/issues"; filled from
    # arguments of the same name. Remaining arguments go in the JSON body (or the
    # query string for GET and DELETE).
    path: str
    input_schema: dict[str, Any] = {"type": "object"}
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = {}


class HttpUpstream(UpstreamBase):
    kind: Literal["http"]
    base_url: str
    headers: dict[str, str] = {}
    tools: list[HttpTool] = Field(min_length=1)


def _upstream_discriminator(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("kind", "mcp")
        transport = value.get("transport", "streamable_http")
    else:
        kind = getattr(value, "kind", "mcp")
        transport = getattr(value, "transport", "streamable_http")
    if kind == "http":
        return "http"
    return "stdio" if transport == "stdio" else "mcp_http"


Upstream = Annotated[
    Annotated[McpHttpUpstream, Tag("mcp_http")]
    | Annotated[McpStdioUpstream, Tag("stdio")]
    | Annotated[HttpUpstream, Tag("http")],
    Discriminator(_upstream_discriminator),
]


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
_WITNESS_KEY = re.compile(r"[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}")


class WitnessConfig(Model):
    """One witness (C2SP tlog-witness) the gateway submits each new checkpoint to."""

    # Its submission prefix: the gateway POSTs to <url>/add-checkpoint.
    url: str = Field(pattern=r"^https?://[^\s]+$")
    # Its cosignature verifier key (`gateway witness keygen` prints it); the part
    # before the first '+' is the witness's name.
    key: str
    # How long one request may take before the witness counts as down this time.
    timeout_s: float = Field(5.0, gt=0, le=120)

    @field_validator("key")
    @classmethod
    def _verifier_key(cls, value: str) -> str:
        if not _WITNESS_KEY.fullmatch(value):
            raise ValueError(
                "must be a witness verifier key <name>+<8 hex digits>+<base64 key> "
                "(as printed by `gateway witness keygen`)"
            )
        return value


class AuditConfig(Model):
    # The log's origin line (C2SP tlog-checkpoint): a name unique to this log. Also the
    # name of its signing key, so no spaces and no "+" (C2SP signed-note).
    origin: str = "agent-gateway/audit"
    # A signed checkpoint is made once this many entries are not covered by one, or
    # once checkpoint_every_s passed since the last with any entry not covered.
    checkpoint_every_entries: int = Field(1000, ge=1)
    checkpoint_every_s: float = Field(10.0, gt=0)
    # Where checkpoints are published (one file per tree size, plus `latest` and
    # `keys`); default: <data_dir>/checkpoints. Put it beyond the database owner's reach.
    checkpoint_dir: Path | None = None
    # The Ed25519 key that signs checkpoints; generated on first start when missing.
    signing_key_file: Path = Path("var/keys/audit-signing.pem")
    # Roles whose holders read entries and payloads in the explorer (REST
    # /v1/audit/entries, the console's audit page). Checkpoints and keys are public.
    reader_roles: list[str] = Field(["auditor"], min_length=1)
    # Witnesses asked to cosign every new checkpoint (docs/audit.md, "Witnesses"); a
    # witness that is down never holds up appends or checkpoints.
    witnesses: list[WitnessConfig] = []

    @model_validator(mode="after")
    def _distinct_witnesses(self) -> AuditConfig:
        keys = [w.key for w in self.witnesses]
        if len(set(keys)) != len(keys):
            raise ValueError("witnesses: a witness key is listed twice")
        return self

    @field_validator("origin")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if not value or "+" in value or any(ch.isspace() for ch in value):
            raise ValueError("must be non-empty, without spaces or '+' (it names the audit key)")
        if not value.isprintable():
            raise ValueError("must not contain control characters")
        return value

    def checkpoint_directory(self, data_dir: Path) -> Path:
        """checkpoint_dir, or its default under ``data_dir``."""
        return self.checkpoint_dir if self.checkpoint_dir is not None else data_dir / "checkpoints"


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
    # Upstream sessions held for calling sessions, per process over every upstream: a
    # session's requests to a 2025-11-25 upstream go on an upstream session of its own
    # (a process per session for a stdio upstream; docs/decisions/0034). Beyond it such
    # a request fails with upstream_sessions_exhausted until a session ends.
    max_upstream_sessions: int = Field(100, ge=1)


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
    # How often an idle worker looks for runnable runs and due schedules.
    poll_s: float = Field(0.2, gt=0, le=60)
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


class Config(Model):
    server: ServerConfig = ServerConfig()
    identity: IdentityConfig
    policy: PolicyConfig = EmbeddedPolicyConfig()
    storage: StorageConfig = StorageConfig()
    upstreams: list[Upstream] = []
    limits: LimitsConfig = LimitsConfig()
    audit: AuditConfig = AuditConfig()
    pinning: PinningConfig = PinningConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    mcp: McpConfig = McpConfig()
    executor: ExecutorConfig = ExecutorConfig()
    tracing: TracingConfig = TracingConfig()
    data_dir: Path = Path("var")
    # How often every upstream's tool list is re-read (0: only at start and reconnect).
    catalog_refresh_s: float = Field(60.0, ge=0)

    @model_validator(mode="after")
    def _lease_outlasts_a_hold(self) -> Config:
        if self.limits.concurrency_lease_s <= self.approvals.hold_s:
            raise ValueError(
                f"limits.concurrency_lease_s ({self.limits.concurrency_lease_s:g}) must be "
                f"longer than approvals.hold_s ({self.approvals.hold_s:g}): a held call "
                "keeps its concurrency slot"
            )
        return self

    @model_validator(mode="after")
    def _sessions_stay_in_one_process(self) -> Config:
        self.check_processes()
        return self

    def check_processes(self) -> None:
        """Raises ValueError when sessions are asked for explicitly with several server
        processes. A session is live state of the process that opened it, and the
        kernel hands each connection to any of the processes sharing the port, so a
        session's next request would mostly find no session (docs/decisions/0035).
        Unasked, sessions are off then (`mcp_sessions`)."""
        processes = self.server.processes
        if processes > 1 and self.mcp.sessions.enabled:
            if "enabled" in self.mcp.sessions.model_fields_set:
                raise ValueError(
                    f"mcp.sessions.enabled: true needs server.processes: 1 (it is "
                    f"{processes}): a session lives in the process that opened it, and "
                    "processes sharing a port cannot route a request to it; run replicas "
                    "behind a load balancer with session affinity instead "
                    "(docs/operations.md, Capacity)"
                )

    @property
    def mcp_sessions(self) -> McpSessionsConfig:
        """The sessions this gateway opens: `mcp.sessions`, off by default with several
        server processes (`check_processes`)."""
        sessions = self.mcp.sessions
        if self.server.processes > 1 and "enabled" not in sessions.model_fields_set:
            return sessions.model_copy(update={"enabled": False})
        return sessions

    @field_validator("upstreams")
    @classmethod
    def _unique_upstreams(cls, upstreams: list[Any]) -> list[Any]:
        names = [u.name for u in upstreams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"upstream names must be unique; repeated: {dupes}")
        return upstreams

    @property
    def audience(self) -> str:
        return self.identity.audience or self.public_url

    @property
    def audiences(self) -> tuple[str, str]:
        """What a token's ``aud`` may be: the gateway, or its MCP endpoint (the resource
        MCP clients name, RFC 8707; also the ``resource`` of /.well-known/…/mcp)."""
        return (self.audience, self.audience.rstrip("/") + "/mcp")

    @property
    def public_url(self) -> str:
        return (self.server.public_url or f"http://{self.server.host}:{self.server.port}").rstrip(
            "/"
        )


def _format_location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("mcp_http", "stdio", "http", "embedded", "opa", "none", "static", "jwt"):
            continue  # discriminator tags say nothing to the user
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {_format_location(tuple(problem['loc']))}: {message}")
    return "\n".join(lines)


def _expand_env(text: str, unset: list[str] | None = None) -> str:
    """Replaces ${VAR} with the environment variable's value; a missing one is an error,
    unless ``unset`` is given: then it is left as written and its name added there.

    Text-level, so a variable can stand for a number too; whole-line comments are
    left alone, so documenting the syntax in a comment does not require the variable.
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            if unset is None:
                raise ConfigError(f"config refers to ${{{name}}} but that variable is not set")
            if name not in unset:
                unset.append(name)
            return match.group(0)
        return os.environ[name]

    return "".join(
        line if line.lstrip().startswith("#") else _ENV_VAR.sub(sub, line)
        for line in text.splitlines(keepends=True)
    )


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_config(data: Any, *, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid:\n{describe_validation_error(exc)}") from None


def load_config(path: str | Path, *, unset: list[str] | None = None) -> Config:
    """The config in ``path``. With ``unset`` (`gateway check-config`, which checks a
    file where its secrets may not be), a ${VAR} not set here stays as written and is
    named there instead of failing."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(_expand_env(text, unset))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    config = parse_config(data, source=str(path))
    return _resolve_paths(config, base=path.parent)


def _resolve_paths(config: Config, *, base: Path) -> Config:
    """Relative paths in a config file are relative to the file, not the working dir."""

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    identity = config.identity.model_copy(
        update={
            "signing_key_file": rel(config.identity.signing_key_file),
            "issuers": [
                i.model_copy(update={"key_files": [rel(k) for k in i.key_files]})
                for i in config.identity.issuers
            ],
        }
    )
    policy = config.policy
    policy_update: dict[str, Any] = {}
    if policy.path is not None:
        policy_update["path"] = rel(policy.path)
    if isinstance(policy, EmbeddedPolicyConfig) and policy.module_cache_dir is not None:
        policy_update["module_cache_dir"] = rel(policy.module_cache_dir)
    conformance_update = {
        key: rel(value)
        for key, value in (
            ("path", policy.conformance.path),
            ("memo_dir", policy.conformance.memo_dir),
        )
        if value is not None
    }
    if conformance_update:
        policy_update["conformance"] = policy.conformance.model_copy(update=conformance_update)
    policy = policy.model_copy(update=policy_update)
    storage = config.storage
    if storage.url.startswith("sqlite:///") and not storage.url.startswith("sqlite:////"):
        relative = storage.url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            storage = storage.model_copy(update={"url": f"sqlite:///{rel(Path(relative))}"})
    audit = config.audit.model_copy(
        update={
            "signing_key_file": rel(config.audit.signing_key_file),
            "checkpoint_dir": None
            if config.audit.checkpoint_dir is None
            else rel(config.audit.checkpoint_dir),
        }
    )
    upstreams = []
    for upstream in config.upstreams:
        if isinstance(upstream.credentials, StaticCredentials) and upstream.credentials.file:
            credentials = upstream.credentials.model_copy(
                update={"file": rel(upstream.credentials.file)}
            )
            upstream = upstream.model_copy(update={"credentials": credentials})
        if isinstance(upstream, McpStdioUpstream) and upstream.cwd is not None:
            upstream = upstream.model_copy(update={"cwd": rel(upstream.cwd)})
        upstreams.append(upstream)
    return config.model_copy(
        update={
            "identity": identity,
            "policy": policy,
            "storage": storage,
            "audit": audit,
            "upstreams": upstreams,
            "data_dir": rel(config.data_dir),
        }
    )
