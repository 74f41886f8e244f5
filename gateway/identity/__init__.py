"""Identity: who is calling, and what the gateway says about it to upstreams.

Responsibilities
- `TokenVerifier` turns an ``Authorization: Bearer <JWT>`` header into a `Principal`
  (subject, roles, scopes, tenant, the RFC 8693 delegation chain) or raises.
- `JwksCache` keeps each issuer's published keys: cached, refreshed on an unknown
  ``kid`` at most once per ``jwks_min_refresh_s``, concurrent refreshes coalesced.
- `keys` loads PEM keys, derives RFC 7638 key ids, creates and exports the gateway's
  own Ed25519 signing key.
- `UpstreamTokenMinter` signs the short-lived tokens upstreams receive; `mint_token`
  makes development tokens.

Invariants
- Fail closed. Every failure raises (`AuthenticationError`, its subclass
  `KeyUnavailable`, or `InsufficientScope`); nothing returns a "not valid" flag that a
  caller could forget to check. Unfetchable keys with nothing cached mean no token
  verifies.
- The algorithm is chosen by the key, never by the token: ``none`` and HMAC are never
  accepted, even if configured, and a token's ``alg`` must fit its key's type.
- No token passthrough. The agent's token never leaves the gateway: upstreams get a
  token minted here (``iss`` = the gateway, ``sub`` = the agent, the ``act`` chain extended
  with the gateway, TTL ≤ 300 s), and the agent's token is never logged or echoed in an
  error message; the verification cache stores only its SHA-256.
"""

from gateway.identity.cache import VerificationCache
from gateway.identity.claims import MAX_ACT_DEPTH, nest_act_chain, parse_act_chain
from gateway.identity.jwks import JwksCache, parse_jwks
from gateway.identity.keys import (
    VerificationKey,
    generate_dev_issuer,
    jwk_thumbprint,
    jwks_document,
    load_or_create_signing_key,
    load_private_key_file,
    load_public_key_file,
    public_jwk,
)
from gateway.identity.minting import MAX_UPSTREAM_TTL_S, UpstreamTokenMinter, mint_token
from gateway.identity.verifier import TokenVerifier, parse_bearer

__all__ = [
    "MAX_ACT_DEPTH",
    "MAX_UPSTREAM_TTL_S",
    "JwksCache",
    "TokenVerifier",
    "UpstreamTokenMinter",
    "VerificationCache",
    "VerificationKey",
    "generate_dev_issuer",
    "jwk_thumbprint",
    "jwks_document",
    "load_or_create_signing_key",
    "load_private_key_file",
    "load_public_key_file",
    "mint_token",
    "nest_act_chain",
    "parse_act_chain",
    "parse_bearer",
    "parse_jwks",
    "public_jwk",
]
