"""Bearer authentication at the HTTP boundary, on both surfaces: every forged, stale or
misdirected token is a 401 with an RFC 9728 challenge, nothing reaches an upstream, and
the metadata the challenge points to is served. Attack tokens are built by hand with
pyjwt and cryptography, the way an attacker would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.identity import mint_token
from tests.e2e.conftest import GRANTS
from tests.support.processes import TEST_ISSUER, GatewayServer, McpUpstreamServer, write_policy

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
METADATA_PATH = "/.well-known/oauth-protected-resource"


# --- building tokens -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _claims(gateway: GatewayServer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": TEST_ISSUER,
        "sub": "agent:attacker",
        "aud": gateway.url,
        "iat": now,
        "exp": now + 600,
        "roles": ["agent"],
    }
    return {**claims, **overrides}


def _issuer_kid(gateway: GatewayServer) -> str:
    return str(jwt.get_unverified_header(gateway.token())["kid"])


def _signed(gateway: GatewayServer, claims: dict[str, Any]) -> str:
    """Claims signed with the genuine issuer key (for stale or misdirected tokens)."""
    key = load_pem_private_key(gateway.issuer_key.read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": _issuer_kid(gateway)})


def _alg_none(gateway: GatewayServer) -> str:
    header = {"alg": "none", "typ": "JWT"}
    return f"{_segment(header)}.{_segment(_claims(gateway))}."


def _hmac_with_public_key(gateway: GatewayServer) -> str:
    """The classic key-confusion attack: HS256 keyed with the issuer's public PEM."""
    public_pem = Path(gateway.config["identity"]["issuers"][0]["key_files"][0]).read_bytes()
    header = {"alg": "HS256", "typ": "JWT", "kid": _issuer_kid(gateway)}
    signing_input = f"{_segment(header)}.{_segment(_claims(gateway))}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unknown_key(gateway: GatewayServer) -> str:
    return mint_token(
        ed25519.Ed25519PrivateKey.generate(),
        issuer=TEST_ISSUER,
        audience=gateway.url,
        sub="agent:attacker",
        roles=["agent"],
    )


def _unknown_key_claiming_known_kid(gateway: GatewayServer) -> str:
    return mint_token(
        ed25519.Ed25519PrivateKey.generate(),
        issuer=TEST_ISSUER,
        audience=gateway.url,
        sub="agent:attacker",
        roles=["agent"],
        kid=_issuer_kid(gateway),
    )


def _expired(gateway: GatewayServer) -> str:
    now = int(time.time())
    return _signed(gateway, _claims(gateway, iat=now - 7200, exp=now - 3600))


def _not_yet_valid(gateway: GatewayServer) -> str:
    return _signed(gateway, _claims(gateway, nbf=int(time.time()) + 3600))


def _wrong_audience(gateway: GatewayServer) -> str:
    return _signed(gateway, _claims(gateway, aud="http://some-other-resource.test"))


def _wrong_issuer(gateway: GatewayServer) -> str:
    return _signed(gateway, _claims(gateway, iss="https://evil.test"))


def _tampered(gateway: GatewayServer) -> str:
    header, payload, signature = gateway.token(sub="agent:humble").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "agent:admin"
    claims["roles"] = ["agent", "admin"]
    return f"{header}.{_segment(claims)}.{signature}"


def _bearer(build: Callable[[GatewayServer], str]) -> Callable[[GatewayServer], str | None]:
    return lambda gateway: f"Bearer {build(gateway)}"


# name -> (Authorization header or None, the verifier's reason for refusing it)
ATTACKS: dict[str, tuple[Callable[[GatewayServer], str | None], str]] = {
    "no-header": (lambda g: None, "missing_token"),
    "basic-scheme": (lambda g: "Basic xyz", "unsupported_scheme"),
    "alg-none": (_bearer(_alg_none), "algorithm_not_accepted"),
    "hs256-public-key": (_bearer(_hmac_with_public_key), "algorithm_not_accepted"),
    "unknown-kid": (_bearer(_unknown_key), "unknown_kid"),
    "foreign-key-known-kid": (_bearer(_unknown_key_claiming_known_kid), "bad_signature"),
    "expired": (_bearer(_expired), "token_expired"),
    "nbf-in-future": (_bearer(_not_yet_valid), "token_not_yet_valid"),
    "wrong-audience": (_bearer(_wrong_audience), "invalid_audience"),
    "wrong-issuer": (_bearer(_wrong_issuer), "untrusted_issuer"),
    "tampered-payload": (_bearer(_tampered), "bad_signature"),
    "garbage": (lambda g: "Bearer this-is-not-a-jwt", "malformed_token"),
}


# --- requests ----------------------------------------------------------------------------


def _auth(authorization: str | None) -> dict[str, str]:
    return {} if authorization is None else {"Authorization": authorization}


def mcp_post(
    gateway: GatewayServer, body: dict[str, Any], authorization: str | None
) -> httpx.Response:
    return httpx.post(
        gateway.mcp_url,
        content=json.dumps(body),
        headers={**MCP_HEADERS, **_auth(authorization)},
        timeout=10,
    )


def jsonrpc_result(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or single-event SSE response."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def surface_requests(
    gateway: GatewayServer, surface: str, authorization: str | None, marker: str
) -> list[httpx.Response]:
    """A tools/list and a tools/call on one surface."""
    if surface == "mcp":
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        calling = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "up__echo", "arguments": {"text": marker}},
        }
        return [
            mcp_post(gateway, listing, authorization),
            mcp_post(gateway, calling, authorization),
        ]
    headers = {**_auth(authorization), "Content-Type": "application/json"}
    return [
        httpx.get(gateway.url + "/v1/tools", headers=headers, timeout=10),
        httpx.post(
            gateway.url + "/v1/tools/up__echo/call",
            content=json.dumps({"arguments": {"text": marker}}),
            headers=headers,
            timeout=10,
        ),
    ]


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoped_gateway(workdir: Path, mcp_upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        workdir / "scoped",
        upstreams=[{"name": "up", "url": mcp_upstream.url, "timeout_s": 5}],
        policy=write_policy(workdir / "scoped", GRANTS),
        identity={"required_scopes": ["tools:call"]},
    )
    server.start()
    yield server
    server.stop()


# --- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["mcp", "rest"])
def test_valid_token_is_accepted(gateway: GatewayServer, surface: str) -> None:
    """The control for every refusal below: the same requests with a genuine token."""
    listing, calling = surface_requests(gateway, surface, f"Bearer {gateway.token()}", "ok")
    assert listing.status_code == 200, listing.text
    assert calling.status_code == 200, calling.text
    if surface == "mcp":
        names = {t["name"] for t in jsonrpc_result(listing)["result"]["tools"]}
        assert jsonrpc_result(calling)["result"]["content"][0]["text"] == "ok"
    else:
        names = {t["name"] for t in listing.json()["tools"]}
        assert calling.json()["result"]["content"][0]["text"] == "ok"
    assert "up__echo" in names


@pytest.mark.parametrize("surface", ["mcp", "rest"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_bad_credentials_are_401_with_a_challenge(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, attack: str, surface: str
) -> None:
    build, reason = ATTACKS[attack]
    authorization = build(gateway)
    marker = f"attack-{attack}-{surface}"
    for response in surface_requests(gateway, surface, authorization, marker):
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith(f'Bearer resource_metadata="{gateway.url}{METADATA_PATH}"'), (
            challenge
        )
        assert 'error="invalid_token"' in challenge
        error = response.json()["error"]
        assert error["code"] == "unauthenticated"
        assert error["details"]["reason"] == reason, error
        if authorization and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
            assert token not in challenge and token not in response.text
    assert marker not in json.dumps(mcp_upstream.calls())


def test_resource_metadata_follows_rfc_9728(gateway: GatewayServer) -> None:
    root = httpx.get(gateway.url + METADATA_PATH, timeout=5)
    assert root.status_code == 200
    assert root.headers["content-type"].startswith("application/json")
    document = root.json()
    assert document["resource"] == gateway.url  # the audience tokens must carry
    assert document["authorization_servers"] == [TEST_ISSUER]
    assert document["bearer_methods_supported"] == ["header"]

    mcp = httpx.get(gateway.url + METADATA_PATH + "/mcp", timeout=5)
    assert mcp.status_code == 200
    document = mcp.json()
    # RFC 9728 §3.3: "resource" is the URL the well-known suffix was inserted into.
    assert document["resource"] == gateway.url + "/mcp"
    assert document["authorization_servers"] == [TEST_ISSUER]
    assert document["bearer_methods_supported"] == ["header"]

    # No token is needed to read them (a client has none yet).
    challenge = mcp_post(gateway, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None)
    url = challenge.headers["www-authenticate"].split('resource_metadata="')[1].split('"')[0]
    assert httpx.get(url, timeout=5).json() == root.json()


@pytest.mark.parametrize("surface", ["mcp", "rest"])
def test_missing_scope_is_403_insufficient_scope(
    scoped_gateway: GatewayServer, mcp_upstream: McpUpstreamServer, surface: str
) -> None:
    marker = f"no-scope-{surface}"
    unscoped = f"Bearer {scoped_gateway.token(scopes=('tools:read',))}"
    for response in surface_requests(scoped_gateway, surface, unscoped, marker):
        assert response.status_code == 403, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith(
            f'Bearer resource_metadata="{scoped_gateway.url}{METADATA_PATH}"'
        )
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="tools:call"' in challenge
        assert response.json()["error"]["code"] == "insufficient_scope"
    assert marker not in json.dumps(mcp_upstream.calls())

    scoped = f"Bearer {scoped_gateway.token(scopes=('tools:read', 'tools:call'))}"
    listing, calling = surface_requests(scoped_gateway, surface, scoped, f"scoped-{surface}")
    assert listing.status_code == 200, listing.text
    assert calling.status_code == 200, calling.text
    assert f"scoped-{surface}" in json.dumps(mcp_upstream.calls())


@pytest.mark.parametrize("audience_suffix", ["", "/mcp"])
def test_tokens_for_the_gateway_or_its_mcp_resource_are_accepted(
    gateway: GatewayServer, audience_suffix: str
) -> None:
    # MCP clients ask for a token for the resource they connect to (RFC 8707), which
    # the /mcp metadata document names; both identify this gateway.
    token = _signed(gateway, _claims(gateway, aud=gateway.url + audience_suffix))
    response = httpx.get(gateway.url + "/v1/tools", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    listed = mcp_post(
        gateway, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, f"Bearer {token}"
    )
    assert listed.status_code == 200


@pytest.mark.parametrize("second", ["same", "forged"])
@pytest.mark.parametrize("path", ["/v1/tools", "/mcp", "/v1/runs"])
def test_a_repeated_authorization_header_is_400_invalid_request(
    gateway: GatewayServer, mcp_upstream: McpUpstreamServer, path: str, second: str
) -> None:
    # Which of two headers counts would be a guess (the first won before): RFC 6750
    # invalid_request, whatever the second one says and in whichever order.
    good = f"Bearer {gateway.token()}"
    other = good if second == "same" else "Bearer not.a.token"
    for pair in ((good, other), (other, good)):
        headers = httpx.Headers([("Authorization", pair[0]), ("Authorization", pair[1])])
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "application/json, text/event-stream"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        response = httpx.request(
            "POST" if path == "/mcp" else "GET",
            gateway.url + path,
            headers=headers,
            content=json.dumps(body) if path == "/mcp" else None,
            timeout=10,
        )
        assert response.status_code == 400, response.text
        assert 'error="invalid_request"' in response.headers["www-authenticate"]
        assert response.json()["error"]["code"] == "invalid_request"
