"""TokenVerifier against the token attacks and malformed input, with file-based keys."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt
import pytest
from identity_util import (
    AUDIENCE,
    ISSUER,
    MakeVerifier,
    b64,
    craft,
    no_network,
    public_pem,
    write_public,
)

from gateway.config import IdentityConfig, IssuerConfig
from gateway.errors import AuthenticationError, ConfigError, InsufficientScope
from gateway.identity import TokenVerifier, jwk_thumbprint, mint_token
from gateway.types import Actor

pytestmark = pytest.mark.anyio


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "agent:triage", "iat": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, payload: dict[str, Any], alg: str, **header: Any) -> str:
    header.setdefault("kid", jwk_thumbprint(key))
    return jwt.encode(payload, key, algorithm=alg, headers=header)


async def rejected(verifier: TokenVerifier, token: str, reason: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(f"Bearer {token}")
    assert caught.value.details["reason"] == reason, caught.value.message
    assert token not in caught.value.message  # never echo the token
    return caught.value


# --- the happy paths ---------------------------------------------------------------------


@pytest.mark.parametrize(("key_name", "alg"), [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")])
async def test_each_key_type_verifies(
    make_verifier: MakeVerifier, request: pytest.FixtureRequest, key_name: str, alg: str
) -> None:
    key = request.getfixturevalue(f"{key_name}_key")
    principal = await make_verifier().verify(f"Bearer {sign(key, claims(jti='t-1'), alg)}")
    assert (principal.sub, principal.iss, principal.token_id) == ("agent:triage", ISSUER, "t-1")


async def test_scheme_is_case_insensitive(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(), "EdDSA")
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert (await make_verifier().verify(f"{scheme} {token}")).sub == "agent:triage"


async def test_principal_fields(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = mint_token(
        ed_key,
        issuer=ISSUER,
        audience=AUDIENCE,
        sub="user:alice",
        roles=["triager", "reader"],
        scopes=["tools:call", "tools:list"],
        act=["agent:triage", "agent:planner"],
        extra_claims={"tenant": "acme", "client_id": "cli-7", "email": "a@example.com"},
    )
    p = await make_verifier().verify(f"Bearer {token}")
    assert p.sub == "user:alice"
    assert p.roles == ("triager", "reader")
    assert p.scopes == ("tools:call", "tools:list")
    assert p.tenant == "acme"
    # act = the current actor, act.act = the one before it
    assert p.act_chain == (Actor("agent:triage"), Actor("agent:planner"))
    assert p.claims == {"client_id": "cli-7", "email": "a@example.com"}
    assert p.token_id is not None


async def test_roles_string_scp_list_and_custom_claim_names(
    make_verifier: MakeVerifier, ed_key: Any
) -> None:
    token = sign(ed_key, claims(groups="admin ops", scp=["a", "b"], org="o-1"), "EdDSA")
    p = await make_verifier(roles_claim="groups", tenant_claim="org").verify(f"Bearer {token}")
    assert (p.roles, p.scopes, p.tenant) == (("admin", "ops"), ("a", "b"), "o-1")
    assert "groups" not in p.claims and "org" not in p.claims


async def test_leeway_accepts_slightly_expired(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(exp=int(time.time()) - 10), "EdDSA")
    assert (await make_verifier(leeway_s=30).verify(f"Bearer {token}")).sub == "agent:triage"


# --- algorithm attacks ---------------------------------------------------------------------


async def test_alg_none_is_rejected(make_verifier: MakeVerifier, ed_key: Any) -> None:
    for alg in ("none", "None", "NONE"):
        token = craft({"alg": alg, "typ": "JWT"}, claims())
        err = await rejected(make_verifier(), token, "algorithm_not_accepted")
        assert f"algorithm {alg} is not accepted" in err.message


async def test_hs256_signed_with_the_rsa_public_pem_is_rejected(
    make_verifier: MakeVerifier, rsa_key: Any
) -> None:
    """Classic confusion: the verifier's RSA public key used as an HMAC secret."""
    header = {"alg": "HS256", "typ": "JWT", "kid": jwk_thumbprint(rsa_key)}
    signing_input = f"{b64(header)}.{b64(claims())}"
    mac = hmac.new(public_pem(rsa_key), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    err = await rejected(make_verifier(), token, "algorithm_not_accepted")
    assert "algorithm HS256 is not accepted" in err.message


async def test_hmac_can_never_be_configured(key_files: list[Any]) -> None:
    # model_construct/model_copy skip validation, as a future config path might.
    issuer = IssuerConfig.model_construct(
        issuer=ISSUER, jwks_url=None, key_files=key_files, algorithms=["HS256", "RS256"]
    )
    valid = IdentityConfig.model_validate({"issuers": [{"issuer": ISSUER, "key_files": key_files}]})
    config = valid.model_copy(update={"issuers": [issuer]})
    with pytest.raises(ConfigError, match="never accepted"):
        TokenVerifier(config, AUDIENCE, no_network())


@pytest.mark.parametrize(
    ("key_name", "alg"), [("ed", "RS256"), ("ec", "RS256"), ("rsa", "ES256"), ("ed", "ES256")]
)
async def test_algorithm_must_fit_the_key_type(
    make_verifier: MakeVerifier, request: pytest.FixtureRequest, key_name: str, alg: str
) -> None:
    key = request.getfixturevalue(f"{key_name}_key")
    token = craft({"alg": alg, "kid": jwk_thumbprint(key)}, claims(), b"x" * 64)
    err = await rejected(make_verifier(), token, "algorithm_key_mismatch")
    assert f"algorithm {alg} does not match key" in err.message


async def test_algorithm_outside_issuer_list(make_verifier: MakeVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key, claims(), "PS256")
    err = await rejected(make_verifier(), token, "algorithm_not_accepted")
    assert "accepted: ES256, EdDSA, RS256" in err.message


async def test_algorithm_widened_by_config(
    make_verifier: MakeVerifier, key_files: list[Any], rsa_key: Any
) -> None:
    issuers = [{"issuer": ISSUER, "key_files": key_files, "algorithms": ["PS256"]}]
    token = sign(rsa_key, claims(), "PS256")
    assert (await make_verifier(issuers=issuers).verify(f"Bearer {token}")).sub == "agent:triage"
    # ...and then RS256 with the same key is no longer accepted.
    await rejected(
        make_verifier(issuers=issuers), sign(rsa_key, claims(), "RS256"), "algorithm_not_accepted"
    )


# --- keys, signatures, claims ----------------------------------------------------------------


async def test_unknown_kid(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(), "EdDSA", kid="no-such-key")
    err = await rejected(make_verifier(), token, "unknown_kid")
    assert "unknown key id 'no-such-key'" in err.message


async def test_key_of_another_issuer_is_not_usable(
    make_verifier: MakeVerifier, key_files: list[Any], tmp_path: Any, rsa_key: Any, ed_key: Any
) -> None:
    issuers = [
        {"issuer": ISSUER, "key_files": [key_files[0]]},  # RSA only
        {"issuer": "https://other.test", "key_files": [key_files[2]]},  # Ed25519 only
    ]
    # Signed with the other issuer's key but claiming to be ISSUER.
    token = sign(ed_key, claims(), "EdDSA")
    await rejected(make_verifier(issuers=issuers), token, "unknown_kid")


async def test_expired(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(exp=1_700_000_000, iat=1_699_999_000), "EdDSA")
    err = await rejected(make_verifier(), token, "token_expired")
    assert "token expired at 2023-11-14T22:13:20Z" in err.message


async def test_not_yet_valid(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(nbf=int(time.time()) + 3600), "EdDSA")
    err = await rejected(make_verifier(), token, "token_not_yet_valid")
    assert "not valid before" in err.message


async def test_issued_in_the_future(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(iat=int(time.time()) + 3600), "EdDSA")
    err = await rejected(make_verifier(), token, "token_not_yet_valid")
    assert "issued in the future" in err.message


async def test_wrong_audience(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(aud="https://someone-else.test"), "EdDSA")
    err = await rejected(make_verifier(), token, "invalid_audience")
    assert f"audience must be '{AUDIENCE}'" in err.message


async def test_audience_list_containing_ours_is_accepted(
    make_verifier: MakeVerifier, ed_key: Any
) -> None:
    token = sign(ed_key, claims(aud=["https://x.test", AUDIENCE]), "EdDSA")
    assert (await make_verifier().verify(f"Bearer {token}")).sub == "agent:triage"


async def test_wrong_issuer(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(iss="https://evil.test"), "EdDSA")
    err = await rejected(make_verifier(), token, "untrusted_issuer")
    assert "'https://evil.test' is not trusted" in err.message


async def test_tampered_payload(make_verifier: MakeVerifier, rsa_key: Any) -> None:
    header, _, signature = sign(rsa_key, claims(), "RS256").split(".")
    forged = f"{header}.{b64(claims(sub='user:admin', roles=['admin']))}.{signature}"
    err = await rejected(make_verifier(), forged, "bad_signature")
    assert "signature does not verify" in err.message


@pytest.mark.parametrize("claim", ["sub", "exp", "aud"])
async def test_missing_required_claim(make_verifier: MakeVerifier, ed_key: Any, claim: str) -> None:
    token = sign(ed_key, claims(**{claim: None}), "EdDSA")
    err = await rejected(make_verifier(), token, "missing_claim")
    assert f"missing the required '{claim}' claim" in err.message


async def test_missing_iss(make_verifier: MakeVerifier, ed_key: Any) -> None:
    await rejected(make_verifier(), sign(ed_key, claims(iss=None), "EdDSA"), "missing_claim")


async def test_string_exp_is_not_a_numeric_date(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = sign(ed_key, claims(exp=str(int(time.time()) + 600)), "EdDSA")
    await rejected(make_verifier(), token, "invalid_claim")


async def test_no_kid_with_one_matching_key(make_verifier: MakeVerifier, ed_key: Any) -> None:
    token = jwt.encode(claims(), ed_key, algorithm="EdDSA")  # no kid header
    assert (await make_verifier().verify(f"Bearer {token}")).sub == "agent:triage"


async def test_no_kid_with_several_matching_keys(
    make_verifier: MakeVerifier, key_files: list[Any], tmp_path: Any, ed_key: Any
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    second = write_public(tmp_path / "ed2.pub.pem", ed25519.Ed25519PrivateKey.generate())
    verifier = make_verifier(issuers=[{"issuer": ISSUER, "key_files": [*key_files, second]}])
    token = jwt.encode(claims(), ed_key, algorithm="EdDSA")
    err = await rejected(verifier, token, "unknown_kid")
    assert "must set 'kid'" in err.message


# --- malformed Authorization headers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Bearer", "missing_token"),
        ("Bearer    ", "missing_token"),
        ("Basic dXNlcjpwYXNz", "unsupported_scheme"),
        ("garbage", "unsupported_scheme"),
        ("Bearer not-a-jwt", "malformed_token"),
        ("Bearer a.b", "malformed_token"),
        ("Bearer a.b.c.d", "malformed_token"),
        ("Bearer e30.e30 .sig", "malformed_token"),
        ("Bearer a.b.c", "malformed_token"),  # base64 of garbage, not JSON
        ("Bearer " + "A" * 20_000 + ".e30.", "malformed_token"),
        (f"Bearer {b64(b'[1]')}.{b64(b'{}')}.", "malformed_token"),  # header not an object
        (f"Bearer {craft({'alg': 'EdDSA', 'kid': 5}, {'iss': ISSUER})}", "malformed_token"),
        (f"Bearer {craft({'alg': 'EdDSA', 'kid': ''}, {'iss': ISSUER})}", "malformed_token"),
        (f"Bearer {b64(b'{}')}.{b64(bytes([0xFF, 0xFE]))}.", "malformed_token"),  # not UTF-8
    ],
)
async def test_malformed_authorization(
    make_verifier: MakeVerifier, header: str | None, reason: str
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await make_verifier().verify(header)
    assert caught.value.details["reason"] == reason, caught.value.message
    credential = (header or "").partition(" ")[2].strip()
    assert not credential or credential not in caught.value.message


async def test_basic_scheme_message(make_verifier: MakeVerifier) -> None:
    with pytest.raises(AuthenticationError, match="scheme 'Basic' is not supported"):
        await make_verifier().verify("Basic dXNlcjpwYXNz")


# --- delegation chain, scopes ------------------------------------------------------------------


async def test_act_chain_depth_is_bounded(make_verifier: MakeVerifier, ed_key: Any) -> None:
    def chain(depth: int) -> dict[str, Any]:
        act: dict[str, Any] | None = None
        for i in reversed(range(depth)):
            act = {"sub": f"agent:{i}", **({"act": act} if act else {})}
        assert act is not None
        return act

    ok = await make_verifier().verify(f"Bearer {sign(ed_key, claims(act=chain(16)), 'EdDSA')}")
    assert [a.sub for a in ok.act_chain] == [f"agent:{i}" for i in range(16)]
    too_deep = sign(ed_key, claims(act=chain(17)), "EdDSA")
    err = await rejected(make_verifier(), too_deep, "act_chain_too_deep")
    assert "deeper than 16" in err.message


async def test_required_scopes(make_verifier: MakeVerifier, ed_key: Any) -> None:
    verifier = make_verifier(required_scopes=["gateway:use", "tools:call"])
    token = sign(ed_key, claims(scope="tools:call other"), "EdDSA")
    with pytest.raises(InsufficientScope) as caught:
        await verifier.verify(f"Bearer {token}")
    assert caught.value.message == "token lacks required scope(s): gateway:use"
    assert caught.value.details["missing_scopes"] == ["gateway:use"]
    ok = sign(ed_key, claims(scope="gateway:use tools:call"), "EdDSA")
    assert (await verifier.verify(f"Bearer {ok}")).scopes == ("gateway:use", "tools:call")


async def test_embedded_jwk_header_is_ignored(make_verifier: MakeVerifier, ed_key: Any) -> None:
    """Keys come from config only: a key carried in the token's own header buys nothing."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from gateway.identity import public_jwk

    attacker = ed25519.Ed25519PrivateKey.generate()
    embedded = {"jwk": public_jwk(attacker), "jku": "https://evil.test/jwks"}
    own_kid = sign(attacker, claims(), "EdDSA", **embedded)
    await rejected(make_verifier(), own_kid, "unknown_kid")
    victim_kid = sign(attacker, claims(), "EdDSA", kid=jwk_thumbprint(ed_key), **embedded)
    await rejected(make_verifier(), victim_kid, "bad_signature")


async def test_absurd_exp_gets_a_message_not_a_crash(
    make_verifier: MakeVerifier, ed_key: Any
) -> None:
    err = await rejected(
        make_verifier(), sign(ed_key, claims(exp=-(10**20)), "EdDSA"), "token_expired"
    )
    assert "token expired at -100000000000000000000" in err.message


async def test_issuer_whose_key_files_fit_no_algorithm(
    make_verifier: MakeVerifier, key_files: list[Any]
) -> None:
    issuers = [{"issuer": ISSUER, "key_files": [key_files[1]], "algorithms": ["RS256"]}]  # EC key
    with pytest.raises(ConfigError, match="can verify"):
        make_verifier(issuers=issuers)


async def test_messages_are_printable_ascii(make_verifier: MakeVerifier, ed_key: Any) -> None:
    """Messages reach the WWW-Authenticate header: no CR/LF, nothing outside ASCII."""
    hostile = "https://\u00e9vil.test/\U0001f4a5\r\nX-Injected: 1"
    tokens = [
        sign(ed_key, claims(iss=hostile), "EdDSA"),
        sign(ed_key, claims(), "EdDSA", kid=hostile),
        sign(ed_key, claims(aud=hostile), "EdDSA"),
        sign(ed_key, claims(), "EdDSA", crit=[hostile], **{hostile: 1}),
    ]
    for token in tokens:
        with pytest.raises(AuthenticationError) as caught:
            await make_verifier().verify(f"Bearer {token}")
        message = caught.value.message
        assert message.isascii() and message.isprintable(), message
        assert "\r" not in message and "\n" not in message
