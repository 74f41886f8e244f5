"""Upstream tokens and dev tokens: claims, the act chain extension, the TTL cap."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from gateway.errors import AuthenticationError
from gateway.identity import MAX_UPSTREAM_TTL_S, UpstreamTokenMinter, jwk_thumbprint, mint_token
from gateway.identity.claims import MAX_ACT_DEPTH
from gateway.types import Actor, Principal

GATEWAY = "https://gateway.test"


def test_upstream_token_claims(ed_key: Any) -> None:
    minter = UpstreamTokenMinter(ed_key, GATEWAY, clock=lambda: 1_000_000.0)
    principal = Principal(
        sub="user:alice",
        iss="https://idp",
        roles=("admin",),
        act_chain=(Actor("agent:triage", "https://idp"), Actor("agent:planner")),
    )
    token = minter.mint(principal, "https://github-mcp.internal", ttl_s=3600)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == minter.kid == jwk_thumbprint(ed_key)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == GATEWAY
    assert claims["aud"] == "https://github-mcp.internal"
    assert claims["sub"] == "user:alice"
    assert claims["exp"] - claims["iat"] == MAX_UPSTREAM_TTL_S  # capped
    assert claims["act"] == {
        "sub": GATEWAY,
        "act": {"sub": "agent:triage", "iss": "https://idp", "act": {"sub": "agent:planner"}},
    }
    assert "roles" not in claims  # upstream tokens carry identity, not the agent's grants
    assert minter.mint(principal, "https://x", 60) != minter.mint(principal, "https://x", 60)


def test_short_ttl_and_bad_arguments(ed_key: Any, rsa_key: Any) -> None:
    minter = UpstreamTokenMinter(ed_key, GATEWAY)
    claims = jwt.decode(
        minter.mint(Principal("a", "i"), "u", 30), options={"verify_signature": False}
    )
    assert claims["exp"] - claims["iat"] == 30
    with pytest.raises(ValueError):
        minter.mint(Principal("a", "i"), "u", 0)
    with pytest.raises(ValueError):
        minter.mint(Principal("a", "i"), "", 30)
    with pytest.raises(TypeError):
        UpstreamTokenMinter(rsa_key, GATEWAY)


def test_chain_too_deep_to_extend(ed_key: Any) -> None:
    principal = Principal("a", "i", act_chain=tuple(Actor(f"x{i}") for i in range(MAX_ACT_DEPTH)))
    with pytest.raises(AuthenticationError, match="would exceed"):
        UpstreamTokenMinter(ed_key, GATEWAY).mint(principal, "u", 60)


def test_mint_token_nests_act_and_picks_algorithm(rsa_key: Any, ec_key: Any, ed_key: Any) -> None:
    for key, alg in ((rsa_key, "RS256"), (ec_key, "ES256"), (ed_key, "EdDSA")):
        token = mint_token(
            key, issuer="i", audience="a", sub="user:x", act=["agent:b", "agent:a"], ttl_s=60
        )
        assert jwt.get_unverified_header(token)["alg"] == alg
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["act"] == {"sub": "agent:b", "act": {"sub": "agent:a"}}
        assert claims["exp"] - claims["iat"] == 60


def test_mint_token_from_pem_file_and_extra_claims(tmp_path: Any) -> None:
    from gateway.identity import generate_dev_issuer, load_public_key_file

    private_path, public_path = generate_dev_issuer(tmp_path)
    token = mint_token(
        private_path, issuer="i", audience="a", sub="s", extra_claims={"tenant": "t"}, kid="k1"
    )
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    public = load_public_key_file(public_path).public_key
    assert jwt.decode(token, public, algorithms=["EdDSA"], audience="a")["tenant"] == "t"
    with pytest.raises(ValueError, match="may not replace"):
        mint_token(private_path, issuer="i", audience="a", sub="s", extra_claims={"sub": "root"})
