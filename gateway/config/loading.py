"""The configuration document (`Config`, the file as a whole) and its one loader.

`load_config` turns every validation problem into a `ConfigError` whose message names
the key path and the problem; ``${VAR}`` in the text is the environment's value."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config.audit import AuditConfig
from gateway.config.base import Model
from gateway.config.identity import IdentityConfig
from gateway.config.policy import EmbeddedPolicyConfig, PolicyConfig
from gateway.config.sections import (
    ApprovalsConfig,
    ExecutorConfig,
    LimitsConfig,
    McpConfig,
    McpSessionsConfig,
    PinningConfig,
    ServerConfig,
    StorageConfig,
    TracingConfig,
)
from gateway.config.upstreams import McpStdioUpstream, StaticCredentials, Upstream
from gateway.errors import ConfigError


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
    import yaml  # lazily: serving reads no YAML (start time, docs/performance.md)

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
