"""An issuer's JWKS, fetched over HTTP and cached.

Rules, and why:

- Keys are kept for ``cache_s``; after that the next lookup refetches.
- An unknown ``kid`` triggers a refetch (the issuer may have rotated), but at most one
  fetch *attempt* per ``min_refresh_s``. Anyone can send a token with a random kid; without
  this limit every such request would become a request to the IdP.
- Concurrent refreshes coalesce: callers that find a fetch in progress wait for it and
  share its result instead of issuing their own.
- A failed fetch keeps the keys we already have (an IdP outage must not log every agent
  out), but with nothing cached there is nothing to verify with: `KeyUnavailable`.
- Only signature keys are kept: ``use`` other than ``sig``, ``key_ops`` without
  ``verify``, HMAC (``oct``) keys, unknown curves, weak RSA and keys whose declared
  ``alg`` this issuer does not accept are skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import httpx

from gateway.errors import KeyUnavailable
from gateway.identity.keys import VerificationKey, key_from_jwk

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 512 * 1024
MAX_KEYS = 64
DEFAULT_FETCH_TIMEOUT_S = 5.0


class JwksError(Exception):
    """A JWKS fetch or parse failed; the message says why (it ends up in KeyUnavailable)."""


def parse_jwks(document: Any, algorithms: Iterable[str]) -> dict[str, VerificationKey]:
    """The usable signature keys of a JWKS document, by kid, each limited to ``algorithms``."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('not a JWK Set (expected an object with a "keys" array)')
    allowed = frozenset(algorithms)
    keys: dict[str, VerificationKey] = {}
    for index, jwk in enumerate(document["keys"]):
        try:
            key = _usable_key(jwk, allowed)
        except ValueError as exc:
            log.debug("skipping JWKS key #%d: %s", index, exc)
            continue
        if key.kid in keys:
            log.warning("JWKS lists kid %r twice; keeping the first", key.kid)
            continue
        if len(keys) == MAX_KEYS:
            log.warning("JWKS has more than %d usable keys; ignoring the rest", MAX_KEYS)
            break
        keys[key.kid] = key
    if not keys:
        raise JwksError(f"no usable signature keys for algorithms {sorted(allowed)}")
    return keys


def _usable_key(jwk: Any, allowed: frozenset[str]) -> VerificationKey:
    if not isinstance(jwk, Mapping):
        raise ValueError("not an object")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"use is {use!r}, not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError("key_ops does not include 'verify'")
    key = key_from_jwk(jwk)
    usable = key.algorithms & allowed
    if not usable:
        raise ValueError(f"none of its algorithms {sorted(key.algorithms)} is accepted")
    return VerificationKey(kid=key.kid, public_key=key.public_key, algorithms=usable)


class JwksCache:
    """The signature keys one issuer publishes at ``url``."""

    def __init__(
        self,
        *,
        issuer: str,
        url: str,
        client: httpx.AsyncClient,
        algorithms: Iterable[str],
        cache_s: float,
        min_refresh_s: float,
        timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.url = url
        self._client = client
        self._algorithms = frozenset(algorithms)
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._monotonic = monotonic
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._last_error: str | None = None
        # Bumped after every attempt; a waiter that sees it changed shares that result.
        self._generation = 0
        self._lock = anyio.Lock()
        self.fetch_count = 0

    async def key(self, kid: str) -> VerificationKey | None:
        """The key with this kid, refetching once (rate-limited) if it is unknown.

        Raises `KeyUnavailable` when no keys could ever be fetched; ``None`` means the
        issuer does not (or no longer) publish(es) this kid.
        """
        before = self._generation
        await self._ensure_loaded()
        found = self._keys.get(kid)
        if found is None and self._generation == before:
            # Not found in keys we did not just fetch: the issuer may have rotated.
            await self._refresh()
            found = self._keys.get(kid)
        return found

    async def keys(self) -> tuple[VerificationKey, ...]:
        """All current keys (for tokens without a kid)."""
        await self._ensure_loaded()
        return tuple(self._keys.values())

    async def _ensure_loaded(self) -> None:
        if self._fetched_at is None or self._monotonic() - self._fetched_at >= self._cache_s:
            await self._refresh()
        if not self._keys:
            detail = f": {self._last_error}" if self._last_error else ""
            raise KeyUnavailable(
                f"signing keys of issuer {self.issuer!r} are unavailable; could not fetch "
                f"{self.url}{detail}",
                details={"reason": "jwks_unavailable", "issuer": self.issuer},
            )

    async def _refresh(self) -> None:
        seen = self._generation
        async with self._lock:
            if self._generation != seen:
                return  # someone refreshed while we waited for the lock: use theirs
            now = self._monotonic()
            if self._attempted_at is not None and now - self._attempted_at < self._min_refresh_s:
                return  # rate limit: the IdP is asked at most once per window
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except JwksError as exc:
                self._last_error = str(exc)
                log.warning(
                    "JWKS refresh for issuer %r failed (%s); %s",
                    self.issuer,
                    exc,
                    f"keeping {len(self._keys)} cached key(s)" if self._keys else "no keys cached",
                )
                return
            finally:
                self._generation += 1
            added = keys.keys() - self._keys.keys()
            if self._keys and added:
                log.info("issuer %r published new key id(s) %s", self.issuer, sorted(added))
            self._keys = keys
            self._fetched_at = now
            self._last_error = None

    async def _fetch(self) -> dict[str, VerificationKey]:
        self.fetch_count += 1
        try:
            # Streamed so an oversized answer is cut off instead of read into memory.
            async with self._client.stream(
                "GET", self.url, headers={"Accept": "application/json"}, timeout=self._timeout_s
            ) as response:
                if response.status_code != 200:
                    raise JwksError(f"HTTP {response.status_code} from {self.url}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise JwksError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from exc
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise JwksError("JWKS is not valid JSON") from exc
        return parse_jwks(document, self._algorithms)
