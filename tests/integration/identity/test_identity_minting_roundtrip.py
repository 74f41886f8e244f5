"""Upstream tokens minted by the gateway verify against its published JWKS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from identity_jwks_server import JwksServer

from gateway.config import IdentityConfig
from gateway.identity import (
    MAX_UPSTREAM_TTL_S,
    TokenVerifier,
    UpstreamTokenMinter,
    load_or_create_signing_key,
)
from gateway.types import Actor, Principal

pytestmark = pytest.mark.anyio

GATEWAY = "https://gateway.test"
UPSTREAM = "https://tools.internal/mcp"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


async def test_minted_token_verifies_with_the_public_jwks(
    jwks_server: JwksServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    minter = UpstreamTokenMinter(load_or_create_signing_key(tmp_path / "gw.pem"), GATEWAY)
    jwks_server.document = minter.jwks()
    # The upstream's point of view: it trusts the gateway as an issuer via its JWKS.
    config = IdentityConfig.model_validate(
        {"issuers": [{"issuer": GATEWAY, "jwks_url": jwks_server.url, "algorithms": ["EdDSA"]}]}
    )
    upstream = TokenVerifier(config, UPSTREAM, client)
    agent = Principal(
        sub="user:alice",
        iss="https://idp.test",
        roles=("triager",),
        act_chain=(Actor("agent:triage"), Actor("agent:planner")),
    )
    minted = minter.mint(agent, UPSTREAM, ttl_s=3600)
    seen = await upstream.verify(f"Bearer {minted}")

    assert seen.sub == "user:alice" and seen.iss == GATEWAY
    # The gateway is the new current actor; the agent's chain follows, order kept.
    assert seen.act_chain == (Actor(GATEWAY), Actor("agent:triage"), Actor("agent:planner"))
    assert seen.roles == ()  # the agent's grants are not forwarded
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == MAX_UPSTREAM_TTL_S

    # A token for another upstream is refused by this one.
    elsewhere = minter.mint(agent, "https://other.internal", ttl_s=60)
    with pytest.raises(Exception, match="audience must be"):
        await upstream.verify(f"Bearer {elsewhere}")
