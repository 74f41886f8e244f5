"""Bearer token verification: ``Authorization`` header in, `Principal` out, or a raise.

Order of checks, and why it is this order:

1. The header must be ``Bearer <compact JWS>`` (case-insensitive scheme), of bounded size.
2. The unverified header and ``iss`` are read *only* to choose the issuer entry and the
   key. Nothing else from the unverified token is trusted.
3. The header's ``alg`` must be accepted by that issuer's config (and is never ``none``
   or HMAC, whatever the config says), and must fit the chosen key's type: the
   algorithm comes from the key, the token only gets to agree with it.
4. pyjwt verifies the signature with exactly that one algorithm, then ``exp``, ``nbf``,
   ``iat`` (with the configured leeway), ``iss`` and ``aud``; ``exp``, ``iss``, ``aud`` and
   ``sub`` are required.
5. Claims become a Principal; then the gateway-wide required scopes are checked (403).

Every failure raises `AuthenticationError` (401) or `InsufficientScope` (403) with a
message the token's owner can act on and a ``details["reason"]`` code. The token itself
never appears in a message or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import jwt

from gateway.canonical import NotIJson, check_document
from gateway.config import IdentityConfig
from gateway.errors import AuthenticationError, ConfigError, InsufficientScope
from gateway.identity.cache import DEFAULT_MAX_ENTRIES, VerificationCache
from gateway.identity.claims import check_numeric_dates, principal_from_claims
from gateway.identity.jwks import JwksCache
from gateway.identity.keys import VerificationKey, b64url_decode, load_public_key_file
from gateway.types import Principal

log = logging.getLogger(__name__)

# Never accepted, whatever the configuration says. Config validation already refuses
# them; this second gate exists so a bypassed or future config cannot reopen the hole.
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
# Real tokens are 1-4 KB; the bound stops us base64-decoding megabytes for an attacker.
MAX_TOKEN_CHARS = 16 * 1024
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
_ALG_SHAPE = re.compile(r"^[A-Za-z0-9+_-]{1,16}$")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def _fail(message: str, reason: str, **details: Any) -> AuthenticationError:
    # Messages quote token fields and end up in logs and in the WWW-Authenticate header:
    # keep them printable ASCII so a hostile "iss" cannot inject lines or break encoding.
    message = _NOT_PRINTABLE.sub(lambda m: ascii(m.group())[1:-1], message)
    return AuthenticationError(message, details={"reason": reason, **details})


def _quote(value: object, limit: int = 80) -> str:
    """ascii() of an attacker-chosen value, shortened: safe for messages and logs."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _alg_name(alg: str) -> str:
    """An algorithm name as written (``HS256``), or quoted if it is anything odd."""
    return alg if _ALG_SHAPE.match(alg) else _quote(alg, 24)


def _iso(timestamp: Any) -> str:
    """A claim's time for a message; absurd values are shown as given, not raised on."""
    try:
        return datetime.fromtimestamp(float(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return _quote(timestamp, 40)


def parse_bearer(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or AuthenticationError."""
    if authorization_header is None or not authorization_header.strip():
        raise _fail("missing bearer token: send 'Authorization: Bearer <JWT>'", "missing_token")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        shown = _quote(scheme, 24) if scheme.isascii() and scheme.isalpha() else "that scheme"
        raise _fail(
            f"authorization scheme {shown} is not supported; send 'Authorization: Bearer <JWT>'",
            "unsupported_scheme",
        )
    token = token.strip()
    if not token:
        raise _fail("the Bearer authorization header carries no token", "missing_token")
    if len(token) > MAX_TOKEN_CHARS:
        raise _fail(f"bearer token is longer than {MAX_TOKEN_CHARS} characters", "malformed_token")
    if not _COMPACT_JWS.match(token):
        raise _fail(
            "bearer token is not a JWT (expected three base64url parts separated by dots)",
            "malformed_token",
        )
    return token


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token's header and claims, unverified: used to choose issuer and key only.

    Parsed here once rather than through pyjwt's unverified API, which would decode the
    token twice more (a third of the uncached cost); pyjwt still does the real decode.
    """
    header_part, payload_part, _ = token.split(".")
    try:
        header = json.loads(b64url_decode(header_part))
        payload = json.loads(b64url_decode(payload_part))
    except (ValueError, RecursionError):  # includes bad base64, UTF-8 and JSON
        raise _fail(
            "malformed token: header and payload must be base64url-encoded JSON", "malformed_token"
        ) from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise _fail("malformed token: header and payload must be JSON objects", "malformed_token")
    try:
        # The claims reach policy and the audit log: the one rule for documents.
        check_document(payload)
    except NotIJson as exc:
        message = f"malformed token: claim {exc.pointer}: {exc.reason}"
        raise _fail(message, "malformed_token") from None
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise _fail("malformed token: 'kid' header must be a non-empty string", "malformed_token")
    return header, payload


class KeySource(Protocol):
    """Where an issuer's keys come from: files (fixed) or a JWKS URL (cached)."""

    async def key(self, kid: str) -> VerificationKey | None: ...

    async def keys(self) -> tuple[VerificationKey, ...]: ...


class StaticKeys:
    """Keys loaded once from PEM files; their kids are RFC 7638 thumbprints."""

    def __init__(self, keys: list[VerificationKey], algorithms: frozenset[str]) -> None:
        self._keys: dict[str, VerificationKey] = {}
        for key in keys:
            usable = key.algorithms & algorithms
            if usable:
                self._keys[key.kid] = VerificationKey(key.kid, key.public_key, usable)
            else:
                log.warning(
                    "key %r is %s, but its issuer accepts none of those", key.kid, key.description
                )

    @property
    def size(self) -> int:
        return len(self._keys)

    async def key(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    async def keys(self) -> tuple[VerificationKey, ...]:
        return tuple(self._keys.values())


@dataclass(frozen=True)
class _Issuer:
    issuer: str
    algorithms: frozenset[str]
    keys: KeySource


class TokenVerifier:
    """Verifies agents' bearer tokens against the configured issuers.

    ``client`` is the shared HTTP client for JWKS fetches (owned by the caller). Results
    are cached per token for up to a minute (``cache_size=0`` turns that off); the
    returned Principal may be shared between calls and must be treated as immutable.
    """

    def __init__(
        self,
        config: IdentityConfig,
        audience: str | Sequence[str],
        client: httpx.AsyncClient,
        *,
        cache_size: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # Several audiences may name this one resource (the gateway, and its /mcp
        # endpoint as MCP clients address it per RFC 8707); a token needs one of them.
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if not audiences or not all(audiences):
            raise ConfigError("identity: the token audience must not be empty")
        self.audiences = audiences
        self.audience = audiences[0]
        self._leeway = config.leeway_s
        self._roles_claim = config.roles_claim
        self._tenant_claim = config.tenant_claim
        self._required_scopes = tuple(config.required_scopes)
        self._cache = VerificationCache(cache_size, clock=clock, monotonic=monotonic)
        self._issuers: dict[str, _Issuer] = {}
        for entry in config.issuers:
            if entry.issuer in self._issuers:
                raise ConfigError(f"identity: issuer {entry.issuer!r} is configured twice")
            forbidden = FORBIDDEN_ALGORITHMS.intersection(entry.algorithms)
            if forbidden:
                raise ConfigError(
                    f"identity: issuer {entry.issuer!r} lists {sorted(forbidden)}; "
                    "'none' and HMAC algorithms are never accepted"
                )
            algorithms = frozenset(entry.algorithms)
            source: KeySource
            if entry.jwks_url:
                if not entry.jwks_url.startswith("https://") and not _is_loopback(entry.jwks_url):
                    log.warning(
                        "issuer %r: JWKS URL %s is not https; keys fetched in clear text "
                        "can be replaced in transit",
                        entry.issuer,
                        entry.jwks_url,
                    )
                source = JwksCache(
                    issuer=entry.issuer,
                    url=entry.jwks_url,
                    client=client,
                    algorithms=algorithms,
                    cache_s=config.jwks_cache_s,
                    min_refresh_s=config.jwks_min_refresh_s,
                    monotonic=monotonic,
                )
            else:
                source = StaticKeys([load_public_key_file(p) for p in entry.key_files], algorithms)
                if not source.size:
                    # Otherwise every token of this issuer would fail with "unknown key id".
                    raise ConfigError(
                        f"identity: none of the key_files of issuer {entry.issuer!r} can verify "
                        f"its algorithms {sorted(algorithms)}"
                    )
            self._issuers[entry.issuer] = _Issuer(entry.issuer, algorithms, source)

    def key_source(self, issuer: str) -> KeySource:
        """The key source of one configured issuer (for diagnostics and tests)."""
        return self._issuers[issuer].keys

    async def verify(self, authorization_header: str | None) -> Principal:
        """The caller's Principal; raises AuthenticationError (401) or InsufficientScope (403)."""
        token = parse_bearer(authorization_header)
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        principal, exp = await self._verify_token(token)
        self._check_scopes(principal)
        self._cache.put(digest, principal, exp)
        return principal

    async def _verify_token(self, token: str) -> tuple[Principal, float]:
        header, unverified = _peek(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise _fail("token header has no 'alg'", "malformed_token")
        if alg in FORBIDDEN_ALGORITHMS or alg.upper().startswith("HS") or alg.lower() == "none":
            raise _fail(f"algorithm {_alg_name(alg)} is not accepted", "algorithm_not_accepted")

        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise _fail("token has no 'iss' (issuer) claim", "missing_claim", claim="iss")
        issuer = self._issuers.get(iss)
        if issuer is None:
            trusted = ", ".join(repr(i) for i in self._issuers)
            raise _fail(
                f"issuer {_quote(iss)} is not trusted; trusted issuers: {trusted}",
                "untrusted_issuer",
            )
        if alg not in issuer.algorithms:
            raise _fail(
                f"algorithm {_alg_name(alg)} is not accepted for issuer {iss!r}; "
                f"accepted: {', '.join(sorted(issuer.algorithms))}",
                "algorithm_not_accepted",
            )

        key = await self._select_key(issuer, header.get("kid"), alg)
        if alg not in key.algorithms:
            # Algorithm confusion guard: e.g. RS256 claimed for an Ed25519 key.
            raise _fail(
                f"algorithm {alg} does not match key {key.kid!r}, {key.description}",
                "algorithm_key_mismatch",
            )

        payload = self._decode(token, key, alg, issuer.issuer, unverified)
        check_numeric_dates(payload)
        principal = principal_from_claims(
            payload, roles_claim=self._roles_claim, tenant_claim=self._tenant_claim
        )
        return principal, float(payload["exp"])

    async def _select_key(self, issuer: _Issuer, kid: Any, alg: str) -> VerificationKey:
        if kid is not None:
            key = await issuer.keys.key(kid)
            if key is None:
                raise _fail(
                    f"unknown key id {_quote(kid, 60)} for issuer {issuer.issuer!r}; the token "
                    "was signed with a key the issuer does not (or no longer) publish",
                    "unknown_kid",
                )
            return key
        # No kid: unambiguous only if exactly one key could have made this signature.
        candidates = [k for k in await issuer.keys.keys() if alg in k.algorithms]
        if len(candidates) != 1:
            raise _fail(
                f"token has no 'kid' header and issuer {issuer.issuer!r} has "
                f"{len(candidates)} keys for {alg}; the issuer must set 'kid'",
                "unknown_kid",
            )
        return candidates[0]

    def _decode(
        self, token: str, key: VerificationKey, alg: str, issuer: str, unverified: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.public_key,
                algorithms=[alg],  # exactly one: the one the key type allows
                audience=list(self.audiences),
                issuer=issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": False},
            )
        # pyjwt checks the signature before any claim, so by the time a claim error is
        # raised the unverified claims used in the messages below are authentic.
        except jwt.InvalidSignatureError:
            raise _fail(
                f"token signature does not verify with key {key.kid!r} of issuer {issuer!r} "
                "(tampered token, or signed by another key)",
                "bad_signature",
            ) from None
        except jwt.ExpiredSignatureError:
            exp = unverified.get("exp")
            raise _fail(
                f"token expired at {_iso(exp)} (leeway {self._leeway} s); get a new token",
                "token_expired",
            ) from None
        except jwt.ImmatureSignatureError:
            nbf = unverified.get("nbf")
            now = time.time()
            if isinstance(nbf, int | float) and nbf > now + self._leeway:
                message = f"token is not valid before {_iso(nbf)}"
            else:
                message = "token was issued in the future (iat); check the issuer's clock"
            raise _fail(message, "token_not_yet_valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _fail(
                f"token is missing the required {exc.claim!r} claim",
                "missing_claim",
                claim=exc.claim,
            ) from None
        except jwt.InvalidAudienceError:
            raise _fail(
                f"audience must be {_one_of(self.audiences)}; the token's 'aud' is "
                f"{_quote(unverified.get('aud'))}",
                "invalid_audience",
            ) from None
        except jwt.InvalidIssuerError:
            raise _fail(f"issuer must be {issuer!r}", "untrusted_issuer") from None
        except jwt.InvalidAlgorithmError:
            raise _fail(f"algorithm {alg} is not accepted", "algorithm_not_accepted") from None
        except jwt.PyJWTError as exc:
            # InvalidKeyError, DecodeError of a claim, InvalidSubjectError, …
            raise _fail(f"token rejected: {exc}", "invalid_token") from None

    def _check_scopes(self, principal: Principal) -> None:
        missing = [s for s in self._required_scopes if s not in principal.scopes]
        if missing:
            raise InsufficientScope(
                f"token lacks required scope(s): {' '.join(missing)}",
                details={"missing_scopes": missing, "required_scopes": list(self._required_scopes)},
            )


def _is_loopback(url: str) -> bool:
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        raise ConfigError(f"identity: jwks_url {url!r} is not a valid URL") from None
    return host in {"127.0.0.1", "::1", "localhost"}


def _one_of(values: Sequence[str]) -> str:
    return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(repr(v) for v in values)
