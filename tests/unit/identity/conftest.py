"""Keys, key files and a verifier factory shared by the identity unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from identity_util import AUDIENCE, ISSUER, MakeVerifier, no_network, write_public

from gateway.config import IdentityConfig
from gateway.identity import TokenVerifier


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def key_files(tmp_path: Path, rsa_key: Any, ec_key: Any, ed_key: Any) -> list[Path]:
    return [
        write_public(tmp_path / "rsa.pub.pem", rsa_key),
        write_public(tmp_path / "ec.pub.pem", ec_key),
        write_public(tmp_path / "ed.pub.pem", ed_key),
    ]


@pytest.fixture
def make_verifier(key_files: list[Path]) -> MakeVerifier:
    """A verifier trusting ISSUER with the three test keys as files; overrides go to config."""

    def make(
        *, issuers: list[dict[str, Any]] | None = None, cache_size: int = 0, **overrides: Any
    ) -> TokenVerifier:
        config = IdentityConfig.model_validate(
            {"issuers": issuers or [{"issuer": ISSUER, "key_files": key_files}], **overrides}
        )
        return TokenVerifier(config, AUDIENCE, no_network(), cache_size=cache_size)

    return make
