"""The ``identity`` section: which token issuers the gateway trusts, and how."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from gateway.config.base import Model

# Algorithms accepted unless the config widens the list. HMAC and "none" can never be
# configured: a shared secret cannot identify an agent, and "none" identifies nobody.
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


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
