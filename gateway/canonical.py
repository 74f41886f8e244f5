"""Canonical JSON (RFC 8785) and the hashes the gateway derives from it."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def jcs(value: Any) -> bytes:
    return rfc8785.dumps(value)


def arguments_hash(arguments: dict[str, Any]) -> str:
    """Binds approvals and replays to the exact arguments (hex SHA-256 of their JCS)."""
    return hashlib.sha256(jcs(arguments)).hexdigest()
