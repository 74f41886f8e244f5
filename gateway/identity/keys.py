"""Public and private keys: loading, RFC 7638 key ids, JWKS export.

A `VerificationKey` binds a public key to the algorithms it may verify. The binding
comes from the key's type, never from a token: an RSA key verifies RS*/PS* only, an EC
key the one ES* of its curve, an Ed25519 key EdDSA only. That is what defeats
algorithm confusion (e.g. an HS256 token "signed" with an RSA public key's PEM).

Key ids default to the RFC 7638 JWK thumbprint, so the same key always gets the same
``kid`` on every gateway process without anyone coordinating names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.errors import ConfigError

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# pyjwt only warns below this; a verifier that accepts 1024-bit RSA is not worth having.
MIN_RSA_BITS = 2048

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# JOSE names the curve, cryptography the group; each curve has exactly one ES* algorithm.
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "P-256": (ec.SECP256R1, "ES256"),
    "P-384": (ec.SECP384R1, "ES384"),
    "P-521": (ec.SECP521R1, "ES512"),
}
_EC_COORDINATE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66}


@dataclass(frozen=True)
class VerificationKey:
    """A public key, its key id, and the only algorithms it may verify."""

    kid: str
    public_key: PublicKey
    algorithms: frozenset[str]

    @property
    def description(self) -> str:
        """Human words for error messages, e.g. "an Ed25519 key (accepts EdDSA)"."""
        return (
            f"{key_type_name(self.public_key)} key (accepts {', '.join(sorted(self.algorithms))})"
        )


# --- small encodings ------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: JWK members must not be ambiguous."""
    if not isinstance(text, str) or not text or "=" in text:
        raise ValueError("expected unpadded base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64url text") from exc
    if b64url(raw) != text:  # rejects stray characters and non-canonical tails
        raise ValueError("invalid base64url text")
    return raw


def _uint_b64(value: int) -> str:
    return b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


# --- key facts -----------------------------------------------------------------------


def _curve_name(curve: ec.EllipticCurve) -> str:
    for name, (cls, _) in _EC_CURVES.items():
        if isinstance(curve, cls):
            return name
    raise ValueError(f"unsupported EC curve {curve.name}; use P-256, P-384 or P-521")


def key_type_name(key: PublicKey | PrivateKey) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"an RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"an EC {_curve_name(key.curve)}"
    return "an Ed25519"


def key_algorithms(key: PublicKey | PrivateKey) -> frozenset[str]:
    """The JWS algorithms this key type can verify or sign; raises ValueError if unusable."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} required")
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return frozenset({_EC_CURVES[_curve_name(key.curve)][1]})
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return frozenset({"EdDSA"})
    raise ValueError(f"unsupported key type {type(key).__name__}; use RSA, EC or Ed25519")


def default_algorithm(key: PublicKey | PrivateKey) -> str:
    """The algorithm used to sign with this key type (and announced in its JWK)."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RS256"
    (alg,) = key_algorithms(key)  # EC and Ed25519 have exactly one
    return alg


def _public(key: PublicKey | PrivateKey) -> PublicKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key.public_key()
    return key


def public_jwk_members(key: PublicKey | PrivateKey) -> dict[str, str]:
    """The required public members of the JWK (exactly the RFC 7638 thumbprint input)."""
    pub = _public(key)
    if isinstance(pub, rsa.RSAPublicKey):
        numbers = pub.public_numbers()
        return {"e": _uint_b64(numbers.e), "kty": "RSA", "n": _uint_b64(numbers.n)}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = _curve_name(pub.curve)
        size = _EC_COORDINATE_BYTES[crv]
        point = pub.public_numbers()
        return {
            "crv": crv,
            "kty": "EC",
            "x": b64url(point.x.to_bytes(size, "big")),
            "y": b64url(point.y.to_bytes(size, "big")),
        }
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    raise ValueError(f"unsupported key type {type(pub).__name__}")


def jwk_thumbprint(key: PublicKey | PrivateKey) -> str:
    """RFC 7638 SHA-256 thumbprint: required members, sorted, no whitespace."""
    canonical = json.dumps(public_jwk_members(key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def verification_key(
    key: PublicKey | PrivateKey, *, kid: str | None = None, alg: str | None = None
) -> VerificationKey:
    """Binds a key to its algorithms; ``alg`` (a JWK's declared alg) narrows them further."""
    algorithms = key_algorithms(key)
    if alg is not None:
        if alg not in algorithms:
            raise ValueError(f"declared alg {alg!r} does not fit {key_type_name(key)} key")
        algorithms = frozenset({alg})
    return VerificationKey(
        kid=kid or jwk_thumbprint(key), public_key=_public(key), algorithms=algorithms
    )


# --- JWK parsing -----------------------------------------------------------------------


def key_from_jwk(jwk: Mapping[str, Any]) -> VerificationKey:
    """Builds a verification key from a JWK's public members; raises ValueError if unusable.

    Private members (``d`` …) are never read: a JWKS that leaks them is the IdP's bug,
    not a reason for us to hold a private key.
    """
    kty = jwk.get("kty")
    public: PublicKey
    if kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk.get("n", "")), "big")
        e = int.from_bytes(b64url_decode(jwk.get("e", "")), "big")
        public = rsa.RSAPublicNumbers(e, n).public_key()
    elif kty == "EC":
        crv = jwk.get("crv")
        if crv not in _EC_CURVES:
            raise ValueError(f"unsupported EC curve {crv!r}")
        x, y = b64url_decode(jwk.get("x", "")), b64url_decode(jwk.get("y", ""))
        if len(x) != _EC_COORDINATE_BYTES[crv] or len(y) != _EC_COORDINATE_BYTES[crv]:
            raise ValueError(f"EC {crv} coordinates have the wrong length")
        # from_encoded_point checks that the point lies on the curve.
        public = ec.EllipticCurvePublicKey.from_encoded_point(_EC_CURVES[crv][0](), b"\x04" + x + y)
    elif kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise ValueError(f"unsupported OKP curve {jwk.get('crv')!r}; only Ed25519")
        public = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk.get("x", "")))
    else:
        # "oct" (HMAC) keys are refused on purpose: a shared secret cannot identify an agent.
        raise ValueError(f"unsupported kty {kty!r}")
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise ValueError("kid must be a non-empty string")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg must be a string")
    return verification_key(public, kid=kid, alg=alg)


# --- PEM files ---------------------------------------------------------------------------


def load_public_key_file(path: str | os.PathLike[str]) -> VerificationKey:
    """Loads a PEM public key (or certificate) file; kid = its RFC 7638 thumbprint."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        # Refuse rather than derive: verifier config should never hold signing secrets.
        raise ConfigError(f"{path} holds a private key; give the issuer's public key instead")
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
        return verification_key(key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path} is not a usable PEM public key: {exc}") from None


def load_private_key_file(path: str | os.PathLike[str]) -> PrivateKey:
    """Loads an unencrypted PEM private key (RSA, EC or Ed25519)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ConfigError(f"{path}: unsupported key type {type(key).__name__}")
    try:
        key_algorithms(key)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return key


def _write_new_file(path: Path, data: bytes, mode: int) -> bool:
    """Creates ``path`` atomically with ``mode``; False if another process got there first.

    Written to a temporary file and hard-linked into place, so a concurrent reader never
    sees a half-written key and two starting processes cannot both win.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not loosen or tighten what we asked for
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_signing_key(path: str | os.PathLike[str]) -> ed25519.Ed25519PrivateKey:
    """The gateway's own Ed25519 key: loaded from ``path``, or generated there (mode 0600)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if _write_new_file(path, pem, 0o600):
            log.info("generated a new Ed25519 signing key at %s", path)
    key = load_private_key_file(path)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path} must hold an Ed25519 private key, not {key_type_name(key)} key")
    if path.stat().st_mode & 0o077:
        log.warning("signing key %s is readable by group or others; chmod 600 it", path)
    return key


def generate_dev_issuer(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """A local Ed25519 token issuer for development: (private PEM, public PEM) paths.

    Created on first use and reused afterwards, so tokens minted yesterday still verify.
    """
    directory = Path(directory)
    private_path = directory / "dev-issuer.pem"
    public_path = directory / "dev-issuer.pub.pem"
    key = load_or_create_signing_key(private_path)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Rewritten whenever it does not match, so a stale public file cannot linger.
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        public_path.unlink(missing_ok=True)
        _write_new_file(public_path, public_pem, 0o644)
    return private_path, public_path


# --- export ------------------------------------------------------------------------------


def public_jwk(key: PublicKey | PrivateKey, *, kid: str | None = None) -> dict[str, str]:
    """The public JWK with kid (thumbprint by default), alg and use=sig."""
    return {
        **public_jwk_members(key),
        "kid": kid or jwk_thumbprint(key),
        "alg": default_algorithm(key),
        "use": "sig",
    }


def jwks_document(keys: Iterable[PublicKey | PrivateKey]) -> dict[str, list[dict[str, str]]]:
    """A JWKS (``{"keys": [...]}``) of the public halves; private members never appear."""
    return {"keys": [public_jwk(key) for key in keys]}
