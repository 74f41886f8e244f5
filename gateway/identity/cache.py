"""A short-lived, bounded cache of successful verifications.

Agents reuse one token for many calls; checking its signature once a minute instead of
on every call removes most of the authentication cost. Entries are keyed by the
SHA-256 of the token (the token itself is never stored) and live until the earlier of
the token's ``exp`` and a fixed TTL, so a cached entry never outlives its token and a
key revoked at the issuer stops being honoured within the TTL.

Only successes are cached: a failure is re-examined every time (it may be a clock or
JWKS problem that has since been fixed).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.types import Principal

DEFAULT_TTL_S = 60.0
DEFAULT_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    exp: float  # the token's exp, wall clock
    deadline: float  # now + ttl, monotonic clock (immune to wall-clock jumps)


class VerificationCache:
    """LRU of token digest → Principal. ``max_entries=0`` disables it."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_s: float = DEFAULT_TTL_S,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0 or ttl_s < 0:
            raise ValueError("max_entries and ttl_s must not be negative")
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._monotonic = monotonic
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        # Both conditions: the TTL bounds how stale a decision is, exp how long a
        # token is honoured (no leeway here: an expiring token is simply re-verified).
        if self._monotonic() >= entry.deadline or self._clock() >= entry.exp:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry.principal

    def put(self, digest: bytes, principal: Principal, exp: float) -> None:
        if self._max == 0 or self._clock() >= exp:
            return
        self._entries[digest] = _Entry(principal, exp, self._monotonic() + self._ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
