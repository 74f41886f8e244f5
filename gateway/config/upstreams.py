"""The ``upstreams`` section: MCP servers (Streamable HTTP or stdio) and plain HTTP
APIs, with the credentials the gateway forwards calls under."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from gateway.config.base import NAME_PATTERN, Model

_SHA256 = re.compile(r"[0-9a-f]{64}")


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
