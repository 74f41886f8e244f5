"""The verification cache: bounded, keyed by token digest, expiring at min(exp, now+60s)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from identity_util import AUDIENCE, ISSUER, MakeVerifier

from gateway.identity import VerificationCache, jwk_thumbprint, mint_token
from gateway.types import Principal

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_entries_expire_at_ttl_or_exp_whichever_first() -> None:
    wall, mono = FakeClock(1000.0), FakeClock(0.0)
    cache = VerificationCache(10, 60.0, clock=wall, monotonic=mono)
    p = Principal(sub="s", iss="i")
    cache.put(b"long", p, exp=5000.0)
    cache.put(b"short", p, exp=1010.0)
    assert cache.get(b"long") is p and cache.get(b"short") is p
    wall.now, mono.now = 1010.0, 10.0
    assert cache.get(b"short") is None  # token expired
    assert cache.get(b"long") is p
    mono.now = 60.0
    assert cache.get(b"long") is None  # TTL over
    cache.put(b"dead", p, exp=900.0)  # already expired: not stored
    assert len(cache) == 0


def test_lru_bound() -> None:
    cache = VerificationCache(2)
    p = Principal(sub="s", iss="i")
    far = time.time() + 3600
    cache.put(b"a", p, far)
    cache.put(b"b", p, far)
    assert cache.get(b"a") is p  # a is now most recent
    cache.put(b"c", p, far)
    assert cache.get(b"b") is None and cache.get(b"a") is p and cache.get(b"c") is p
    disabled = VerificationCache(0)
    disabled.put(b"a", p, far)
    assert disabled.get(b"a") is None


async def test_verifier_reuses_cached_principal(
    make_verifier: MakeVerifier, ed_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(cache_size=100)
    token = mint_token(ed_key, issuer=ISSUER, audience=AUDIENCE, sub="agent:a")
    first = await verifier.verify(f"Bearer {token}")
    calls = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    assert await verifier.verify(f"bearer {token}") is first
    assert calls == 0  # no parsing, no signature check
    other = mint_token(ed_key, issuer=ISSUER, audience=AUDIENCE, sub="agent:b")
    assert (await verifier.verify(f"Bearer {other}")).sub == "agent:b"
    assert calls > 0


async def test_failures_are_not_cached(make_verifier: MakeVerifier, ed_key: Any) -> None:
    from gateway.errors import InsufficientScope

    verifier = make_verifier(cache_size=100, required_scopes=["x"])
    token = mint_token(
        ed_key, issuer=ISSUER, audience=AUDIENCE, sub="a", kid=jwk_thumbprint(ed_key)
    )
    for _ in range(2):
        with pytest.raises(InsufficientScope):
            await verifier.verify(f"Bearer {token}")


async def test_the_cache_saves_the_signature_check_of_every_repeated_token(
    make_verifier: MakeVerifier, rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of the cache, as work not done (what it saves in time is the
    benchmark's to measure, not a test's on a shared machine)."""
    token = mint_token(rsa_key, issuer=ISSUER, audience=AUDIENCE, sub="agent:a")
    header = f"Bearer {token}"
    decodes = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal decodes
        decodes += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    checked = {}
    for size in (0, 100):
        verifier = make_verifier(cache_size=size)
        decodes = 0
        for _ in range(20):
            await verifier.verify(header)
        checked[size] = decodes
    assert checked == {0: 20, 100: 1}
