"""Tokens the gateway signs: per-call upstream credentials, and development tokens.

Upstream tokens (architecture.md §4) are how an upstream learns who asked and through whom,
without ever seeing the agent's own token: ``iss`` = the gateway, ``aud`` = the upstream,
``sub`` = the agent's subject, and the agent's ``act`` chain with the gateway added as the
new current actor. They live at most five minutes and are signed with the gateway's
Ed25519 key, whose public half is served at ``/.well-known/jwks.json``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.errors import AuthenticationError
from gateway.identity.claims import MAX_ACT_DEPTH, nest_act_chain
from gateway.identity.keys import (
    PrivateKey,
    default_algorithm,
    jwk_thumbprint,
    jwks_document,
    load_private_key_file,
)
from gateway.types import Actor, Principal

# architecture.md §4: "TTL ≤ 5 minutes". A leaked upstream token is worth little for long.
MAX_UPSTREAM_TTL_S = 300


def _new_jti() -> str:
    return secrets.token_urlsafe(16)


class UpstreamTokenMinter:
    """Signs short-lived upstream tokens with the gateway's Ed25519 key."""

    def __init__(
        self,
        signing_key: ed25519.Ed25519PrivateKey,
        issuer: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(signing_key, ed25519.Ed25519PrivateKey):
            raise TypeError("the gateway signing key must be an Ed25519 private key")
        if not issuer:
            raise ValueError("the gateway issuer must not be empty")
        self._key = signing_key
        self.issuer = issuer
        self.kid = jwk_thumbprint(signing_key)
        self._clock = clock

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The document served at ``/.well-known/jwks.json``."""
        return jwks_document([self._key])

    def mint(self, principal: Principal, audience: str, ttl_s: int) -> str:
        """A token for one upstream call on behalf of ``principal``; TTL capped at 300 s."""
        if not audience:
            raise ValueError("an upstream token needs an audience")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        chain = (Actor(sub=self.issuer), *principal.act_chain)
        if len(chain) > MAX_ACT_DEPTH:
            # The upstream (often another verifier like ours) would refuse it anyway;
            # say so here instead of sending a token that cannot work.
            raise AuthenticationError(
                f"delegation chain would exceed {MAX_ACT_DEPTH} actors with the gateway added",
                details={"reason": "act_chain_too_deep"},
            )
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": principal.sub,
            "aud": audience,
            "iat": now,
            "exp": now + min(ttl_s, MAX_UPSTREAM_TTL_S),
            "jti": _new_jti(),
            "act": nest_act_chain(chain),
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})


def mint_token(
    private_key: PrivateKey | str | os.PathLike[str],
    *,
    issuer: str,
    audience: str,
    sub: str,
    roles: Sequence[str] = (),
    scopes: Sequence[str] = (),
    act: Sequence[str] = (),
    ttl_s: int = 3600,
    kid: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed token for development and tests (what a real IdP would issue).

    ``private_key`` is a key or a PEM file path; the algorithm follows the key type
    (Ed25519 → EdDSA, RSA → RS256, EC → ES256/384/512). ``act`` lists actor subjects,
    current actor first, and becomes nested ``act`` claims. ``kid`` defaults to the
    key's RFC 7638 thumbprint, which is what the verifier derives for key files.
    ``extra_claims`` may add claims but not replace the ones set from the arguments.
    """
    if isinstance(private_key, str | os.PathLike):
        private_key = load_private_key_file(Path(private_key))
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_s,
        "jti": _new_jti(),
    }
    if roles:
        claims["roles"] = list(roles)
    if scopes:
        claims["scope"] = " ".join(scopes)
    if act:
        claims["act"] = nest_act_chain([Actor(sub=s) for s in act])
    if extra_claims:
        clash = sorted(set(extra_claims) & set(claims))
        if clash:
            raise ValueError(f"extra_claims may not replace {clash}; use the named arguments")
        claims.update(extra_claims)
    headers = {"kid": kid or jwk_thumbprint(private_key)}
    return jwt.encode(
        claims, private_key, algorithm=default_algorithm(private_key), headers=headers
    )
