"""Which JWKS entries are usable, and fetch failures, without a server (MockTransport)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.errors import KeyUnavailable
from gateway.identity import JwksCache, jwks_document, parse_jwks
from gateway.identity.jwks import MAX_JWKS_BYTES, JwksError

pytestmark = pytest.mark.anyio

ALL = ["RS256", "ES256", "EdDSA"]


def test_only_signature_keys_with_accepted_algorithms(
    rsa_key: Any, ec_key: Any, ed_key: Any
) -> None:
    rsa_jwk, ec_jwk, ed_jwk = jwks_document([rsa_key, ec_key, ed_key])["keys"]
    document = {
        "keys": [
            {**rsa_jwk, "use": "enc", "kid": "enc"},  # encryption key: ignored
            {**ec_jwk, "key_ops": ["encrypt"], "kid": "ops"},  # not for verify: ignored
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},  # never
            {**ed_jwk, "alg": "RS256", "kid": "liar"},  # declared alg does not fit
            "not an object",
            {**rsa_jwk, "kid": "rsa"},
            {**ec_jwk, "kid": "ec", "key_ops": ["verify"]},
            {**ed_jwk, "kid": "ed"},
        ]
    }
    keys = parse_jwks(document, ALL)
    assert sorted(keys) == ["ec", "ed", "rsa"]
    assert keys["rsa"].algorithms == {"RS256"}  # narrowed to what the issuer accepts
    only_ed = parse_jwks(document, ["EdDSA"])
    assert sorted(only_ed) == ["ed"]


@pytest.mark.parametrize("document", [{}, {"keys": {}}, [], {"keys": [{"kty": "oct", "k": "AA"}]}])
def test_unusable_documents(document: Any) -> None:
    with pytest.raises(JwksError):
        parse_jwks(document, ALL)


def cache_for(handler: Any, **kwargs: Any) -> JwksCache:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    options = {"cache_s": 600.0, "min_refresh_s": 30.0, **kwargs}
    return JwksCache(
        issuer="https://idp", url="https://idp/jwks", client=client, algorithms=ALL, **options
    )


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500), "HTTP 500"),
        (httpx.Response(200, content=b"<html>"), "not valid JSON"),
        (httpx.Response(200, content=b" " * (MAX_JWKS_BYTES + 1)), "larger than"),
        (httpx.Response(200, json={"keys": []}), "no usable signature keys"),
    ],
)
async def test_fetch_failures_with_empty_cache(response: httpx.Response, message: str) -> None:
    cache = cache_for(lambda request: response)
    with pytest.raises(KeyUnavailable, match=message):
        await cache.key("any")


async def test_connection_error_is_key_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(KeyUnavailable, match="ConnectError: connection refused"):
        await cache_for(refuse).key("any")
