"""The ``policy`` section: the embedded engine or an OPA sidecar, its bundles and
their signing, the decision queue, and the start-up conformance check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from gateway.config.base import Model


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
