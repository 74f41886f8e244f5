"""JwksCache and TokenVerifier against a real JWKS endpoint on loopback."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from identity_jwks_server import JwksServer

from gateway.config import IdentityConfig
from gateway.errors import AuthenticationError, KeyUnavailable
from gateway.identity import TokenVerifier, jwks_document, mint_token
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.test"
AUDIENCE = "https://gateway.test/mcp"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


def verifier_for(
    url: str, client: httpx.AsyncClient, clock: FakeMonotonic | None = None, **identity: Any
) -> TokenVerifier:
    config = IdentityConfig.model_validate(
        {"issuers": [{"issuer": ISSUER, "jwks_url": url}], **identity}
    )
    extra = {"monotonic": clock} if clock else {}
    return TokenVerifier(config, AUDIENCE, client, cache_size=0, **extra)


def token(key: Any, **kwargs: Any) -> str:
    return "Bearer " + mint_token(key, issuer=ISSUER, audience=AUDIENCE, sub="agent:a", **kwargs)


async def test_key_rotation_is_picked_up_on_unknown_kid(
    jwks_server: JwksServer, client: httpx.AsyncClient
) -> None:
    old, new = ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    clock = FakeMonotonic()
    verifier = verifier_for(jwks_server.url, client, clock, jwks_min_refresh_s=30)
    jwks_server.document = jwks_document([old])
    assert (await verifier.verify(token(old))).sub == "agent:a"
    assert (await verifier.verify(token(old))).sub == "agent:a"
    assert jwks_server.requests == 1  # cached

    # The IdP rotates: the new key is published, the old one withdrawn.
    jwks_server.document = jwks_document([new])
    clock.now += 31
    assert (await verifier.verify(token(new))).sub == "agent:a"
    assert jwks_server.requests == 2
    clock.now += 31
    with pytest.raises(AuthenticationError, match="unknown key id") as caught:
        await verifier.verify(token(old))
    assert caught.value.details["reason"] == "unknown_kid"
    assert jwks_server.requests == 3  # looked once more, then refused


async def test_flood_of_unknown_kids_fetches_once_per_window(
    jwks_server: JwksServer, client: httpx.AsyncClient
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    jwks_server.document = jwks_document([key])
    clock = FakeMonotonic()
    verifier = verifier_for(jwks_server.url, client, clock, jwks_min_refresh_s=30)
    await verifier.verify(token(key))
    assert jwks_server.requests == 1

    async def attack() -> None:
        with pytest.raises(AuthenticationError, match="unknown key id"):
            await verifier.verify(token(key, kid=secrets.token_urlsafe(8)))

    for step, expected in ((31, 2), (5, 2), (10, 2), (20, 3), (1, 3)):
        clock.now += step
        async with anyio.create_task_group() as group:
            for _ in range(100):
                group.start_soon(attack)
        for _ in range(20):
            await attack()
        assert jwks_server.requests == expected, f"after +{step}s"


async def test_concurrent_refreshes_are_coalesced(
    jwks_server: JwksServer, client: httpx.AsyncClient
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    jwks_server.document = jwks_document([key])
    jwks_server.answering.clear()  # the first fetch stays in flight until released
    # No rate limit at all: only coalescing can keep this to one request.
    verifier = verifier_for(jwks_server.url, client, jwks_min_refresh_s=0)
    results: list[str] = []

    async def call() -> None:
        results.append((await verifier.verify(token(key))).sub)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(call)
        # Every call ran up to its wait for keys (the loop turned many times while the
        # fetch was in flight): release the one fetch.
        await eventually_async(lambda: jwks_server.requests, "a JWKS fetch")
        jwks_server.answering.set()
    assert results == ["agent:a"] * 50
    assert jwks_server.requests == 1


async def test_endpoint_down_with_empty_cache_fails_closed(
    jwks_server: JwksServer, client: httpx.AsyncClient, closed_port_url: str
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    jwks_server.status = 503
    clock = FakeMonotonic()
    verifier = verifier_for(jwks_server.url, client, clock, jwks_min_refresh_s=30)
    with pytest.raises(KeyUnavailable, match="HTTP 503") as caught:
        await verifier.verify(token(key))
    assert caught.value.http_status == 401 and caught.value.code == "issuer_keys_unavailable"
    # Retries inside the window do not hit the IdP again, and still fail closed.
    with pytest.raises(KeyUnavailable):
        await verifier.verify(token(key))
    assert jwks_server.requests == 1

    refused = verifier_for(closed_port_url, client)
    with pytest.raises(KeyUnavailable, match="ConnectError"):
        await refused.verify(token(key))


async def test_cached_keys_survive_an_outage(
    jwks_server: JwksServer, client: httpx.AsyncClient
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    jwks_server.document = jwks_document([key])
    clock = FakeMonotonic()
    verifier = verifier_for(jwks_server.url, client, clock, jwks_cache_s=60, jwks_min_refresh_s=30)
    await verifier.verify(token(key))
    jwks_server.status = 500
    clock.now += 120  # cache expired; the refetch fails; the known key keeps working
    assert (await verifier.verify(token(key))).sub == "agent:a"
    assert jwks_server.requests == 2
    jwks_server.status = 200
    clock.now += 31
    await verifier.verify(token(key))
    assert jwks_server.requests == 3  # recovered on the next allowed attempt
