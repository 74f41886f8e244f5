"""The ``audit`` section: checkpoints, signing, erasure, and the witnesses that
cosign checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from gateway.config.base import Model

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
