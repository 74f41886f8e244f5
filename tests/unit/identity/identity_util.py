"""Helpers for the identity unit tests: hand-made tokens and key files."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from gateway.identity import TokenVerifier

ISSUER = "https://idp.test"
AUDIENCE = "https://gateway.test/mcp"

# make_verifier(issuers=None, cache_size=0, **identity_config_overrides)
MakeVerifier = Callable[..., TokenVerifier]


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public(path: Path, key: Any) -> Path:
    path.write_bytes(public_pem(key))
    return path


def b64(data: bytes | dict[str, Any]) -> str:
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand, as an attacker would."""
    return f"{b64(header)}.{b64(payload)}.{b64(signature)}"


def no_network() -> httpx.AsyncClient:
    """A client that fails the test if anything tries to use the network."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected HTTP request to {request.url}")

    return httpx.AsyncClient(transport=httpx.MockTransport(refuse))
