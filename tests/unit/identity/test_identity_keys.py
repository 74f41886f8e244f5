"""Key loading, RFC 7638 key ids, the gateway signing key and JWKS export."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from identity_util import write_public

from gateway.errors import ConfigError
from gateway.identity import (
    generate_dev_issuer,
    jwk_thumbprint,
    jwks_document,
    load_or_create_signing_key,
    load_public_key_file,
)
from gateway.identity.keys import b64url_decode, key_from_jwk

# RFC 7638 §3.1 (the RFC 7517 A.1 RSA key) and RFC 8037 A.3 (Ed25519).
RFC7638_RSA = {
    "kty": "RSA",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
        "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
        "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
        "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
        "Cur-kEgU8awapJzKnqDKgw"
    ),
}
RFC8037_ED25519 = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}


def test_rfc7638_thumbprint_vector() -> None:
    key = key_from_jwk(RFC7638_RSA)
    assert jwk_thumbprint(key.public_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert key.kid == "2011-04-29"  # a published kid is kept
    assert key.algorithms == {"RS256"}  # narrowed to the declared alg


def test_rfc8037_ed25519_thumbprint_vector() -> None:
    key = key_from_jwk(RFC8037_ED25519)
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"  # thumbprint as kid
    assert key.algorithms == {"EdDSA"}


@pytest.mark.parametrize(
    ("key_name", "algorithms"),
    [
        ("rsa", {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
        ("ec", {"ES256"}),
        ("ed", {"EdDSA"}),
    ],
)
def test_load_public_key_files(
    tmp_path: Path, request: pytest.FixtureRequest, key_name: str, algorithms: set[str]
) -> None:
    key = request.getfixturevalue(f"{key_name}_key")
    loaded = load_public_key_file(write_public(tmp_path / "k.pem", key))
    assert loaded.algorithms == algorithms
    assert loaded.kid == jwk_thumbprint(key) == jwk_thumbprint(key.public_key())
    # Stable: the same key gets the same kid every time.
    assert load_public_key_file(tmp_path / "k.pem").kid == loaded.kid


def test_p384_key_verifies_es384_only(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    assert load_public_key_file(write_public(tmp_path / "k.pem", key)).algorithms == {"ES384"}


def test_private_key_file_is_refused_as_verification_key(tmp_path: Path, ed_key: Any) -> None:
    path = tmp_path / "private.pem"
    path.write_bytes(
        ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="holds a private key"):
        load_public_key_file(path)


def test_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_public_key_file(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not a usable PEM public key"):
        load_public_key_file(tmp_path / "junk.pem")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="at least 2048"):
        load_public_key_file(write_public(tmp_path / "weak.pem", weak))


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0"},  # HMAC secrets are never verification keys
        {"kty": "OKP", "crv": "Ed448", "x": "AAAA"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},  # wrong length
        {**RFC8037_ED25519, "alg": "RS256"},  # declared alg does not fit the key
        {**RFC8037_ED25519, "x": RFC8037_ED25519["x"] + "="},  # padded base64
        {**RFC8037_ED25519, "kid": 7},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # far too small
    ],
)
def test_unusable_jwks_entries(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        key_from_jwk(jwk)


def test_ec_point_must_be_on_the_curve(ec_key: Any) -> None:
    jwk = jwks_document([ec_key])["keys"][0]
    y = bytearray(b64url_decode(jwk["y"]))
    y[-1] ^= 1
    from gateway.identity.keys import b64url

    with pytest.raises(ValueError):
        key_from_jwk({**jwk, "y": b64url(bytes(y))})


def test_jwks_document_round_trips_and_has_no_private_members(
    rsa_key: Any, ec_key: Any, ed_key: Any
) -> None:
    document = jwks_document([rsa_key, ec_key, ed_key])
    assert [(k["kty"], k["alg"], k["use"]) for k in document["keys"]] == [
        ("RSA", "RS256", "sig"),
        ("EC", "ES256", "sig"),
        ("OKP", "EdDSA", "sig"),
    ]
    for jwk, key in zip(document["keys"], [rsa_key, ec_key, ed_key], strict=True):
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
        assert jwk["kid"] == jwk_thumbprint(key) == key_from_jwk(jwk).kid


def test_signing_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys" / "gateway-signing.pem"
    key = load_or_create_signing_key(path)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind
    again = load_or_create_signing_key(path)
    assert jwk_thumbprint(again) == jwk_thumbprint(key)


def test_signing_key_must_be_ed25519(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="must hold an Ed25519 private key"):
        load_or_create_signing_key(path)


def test_dev_issuer_is_created_then_reused(tmp_path: Path) -> None:
    private_path, public_path = generate_dev_issuer(tmp_path / "dev")
    first_kid = load_public_key_file(public_path).kid
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert generate_dev_issuer(tmp_path / "dev") == (private_path, public_path)
    assert load_public_key_file(public_path).kid == first_kid
