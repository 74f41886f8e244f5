"""The sealed ``requestState`` of a relayed request for client input (2026-07-28), and
the table that makes each one single-use (docs/decisions/0019).

When an upstream asks the client something while a 2026-07-28 request runs, the
gateway answers the client with an ``input_required`` result whose ``requestState``
it made itself: the client sends it back with its answers, and the gateway resumes
the request. The state is attacker-controlled input (the specification says so), so:

- it is sealed with AES-256-GCM under a key derived (HKDF) from the gateway's own
  Ed25519 signing key, which every replica shares: a client cannot read, forge or
  alter it;
- it binds who may send it back (issuer and canonical subject), the endpoint, the
  method, the target (gateway name), the arguments' hash and the upstream, and
  expires ``ttl_s`` after it was made;
- its random id (``jti``) is inserted into ``relay_states`` when it is accepted: a
  second use of the same state is a replay, refused on every replica.

Every refusal is a `RelayStateRefused` whose ``reason`` is one of `REASONS`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from gateway.errors import RelayStateRefused
from gateway.store import dialect_of
from gateway.store.tables import relay_states
from gateway.types import Identity

PREFIX = "agw1."
_CONTEXT = b"agw-relay-state-v1"
_NONCE_BYTES = 12
# A state is small (ids, names, hashes); anything much longer is not one of ours.
MAX_STATE_CHARS = 8192

# Why a state was refused (``error.data.reason``).
REASONS = (
    "malformed",
    "tampered",
    "expired",
    "other_principal",
    "other_request",
    "replayed",
    "unknown",  # sealed here, but no request waits for it in this process
)


@dataclass(frozen=True)
class StateClaims:
    """What a sealed state says: who, where, what, until when, and which waiting
    request it resumes (``continuation``) with which input keys."""

    jti: str
    identity: Identity
    endpoint: str
    method: str
    target: str
    arguments_sha256: str
    upstream: str
    continuation: str
    keys: tuple[str, ...]
    expires_at: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "jti": self.jti,
            "iss": self.identity.iss,
            "sub": self.identity.sub,
            "ep": self.endpoint,
            "m": self.method,
            "t": self.target,
            "a": self.arguments_sha256,
            "up": self.upstream,
            "c": self.continuation,
            "k": list(self.keys),
            "exp": self.expires_at,
        }

    @classmethod
    def from_wire(cls, data: Any) -> StateClaims:
        try:
            return cls(
                jti=_text(data["jti"]),
                identity=Identity(_text(data["iss"]), _text(data["sub"])),
                endpoint=_text(data["ep"]),
                method=_text(data["m"]),
                target=_text(data["t"]),
                arguments_sha256=_text(data["a"]),
                upstream=_text(data["up"]),
                continuation=_text(data["c"]),
                keys=tuple(_text(k) for k in data["k"]),
                expires_at=float(data["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            raise _refused("malformed", "the requestState does not hold a relay state") from None


class StateSeal:
    """Seals and opens relay states. ``wall`` is the wall clock (epoch seconds): the
    expiry must mean the same on every replica."""

    def __init__(self, secret: bytes, *, ttl_s: float, wall: Callable[[], float] = time.time):
        if len(secret) != 32:
            raise ValueError("the relay state key is 32 bytes")
        self._aead = AESGCM(secret)
        self.ttl_s = ttl_s
        self._wall = wall

    @classmethod
    def from_signing_key(
        cls, key: ed25519.Ed25519PrivateKey, *, ttl_s: float, wall: Callable[[], float] = time.time
    ) -> StateSeal:
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CONTEXT).derive(raw)
        return cls(secret, ttl_s=ttl_s, wall=wall)

    def new_claims(
        self,
        *,
        identity: Identity,
        endpoint: str,
        method: str,
        target: str,
        arguments_sha256: str,
        upstream: str,
        continuation: str,
        keys: tuple[str, ...],
    ) -> StateClaims:
        return StateClaims(
            jti=secrets.token_urlsafe(16),
            identity=identity,
            endpoint=endpoint,
            method=method,
            target=target,
            arguments_sha256=arguments_sha256,
            upstream=upstream,
            continuation=continuation,
            keys=keys,
            expires_at=round(self._wall() + self.ttl_s, 3),
        )

    def seal(self, claims: StateClaims) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = json.dumps(claims.to_wire(), separators=(",", ":"), sort_keys=True).encode()
        sealed = self._aead.encrypt(nonce, plain, _CONTEXT)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(
        self,
        token: str,
        *,
        identity: Identity,
        endpoint: str,
        method: str,
        target: str,
        arguments_sha256: str,
    ) -> StateClaims:
        """The claims of ``token`` if it is a state this gateway sealed, unexpired, for
        this caller and this very request; raises `RelayStateRefused` otherwise."""
        if not token.startswith(PREFIX) or len(token) > MAX_STATE_CHARS:
            raise _refused("malformed", "the requestState was not made by this gateway")
        body = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise _refused("malformed", "the requestState is not base64url") from None
        if len(raw) <= _NONCE_BYTES:
            raise _refused("malformed", "the requestState is too short")
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _CONTEXT)
        except InvalidTag:
            raise _refused(
                "tampered", "the requestState was altered or not sealed by this gateway"
            ) from None
        try:
            claims = StateClaims.from_wire(json.loads(plain))
        except ValueError:
            raise _refused("malformed", "the requestState does not hold a relay state") from None
        if self._wall() >= claims.expires_at:
            raise _refused("expired", "the requestState expired: send the request again without it")
        if claims.identity != identity:
            raise _refused("other_principal", "the requestState was issued to someone else")
        if (claims.endpoint, claims.method, claims.target, claims.arguments_sha256) != (
            endpoint,
            method,
            target,
            arguments_sha256,
        ):
            raise _refused(
                "other_request",
                "the requestState belongs to another request (method, name, URI or "
                "arguments differ)",
            )
        return claims


class UsedStates:
    """``relay_states``: the ids of accepted states. Blocking (SQLAlchemy Core): callers
    in the event loop run these in a worker thread."""

    def __init__(self, engine: Engine, *, wall: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._dialect = dialect_of(engine)
        self._wall = wall

    def use(self, claims: StateClaims) -> None:
        """Records ``claims`` as used; raises `RelayStateRefused` (replayed) if it was.
        Expired rows are deleted on the way: their states are refused by the seal."""
        try:
            with self._dialect.write_transaction(self._engine) as conn:
                conn.execute(
                    sa.delete(relay_states).where(relay_states.c.expires_at < self._wall())
                )
                conn.execute(
                    sa.insert(relay_states).values(jti=claims.jti, expires_at=claims.expires_at)
                )
        except IntegrityError:
            raise _refused("replayed", "the requestState was already used") from None


def _refused(reason: str, message: str) -> RelayStateRefused:
    return RelayStateRefused(message, reason=reason)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value
