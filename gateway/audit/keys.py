"""Audit signing keys: the log's private keys, and the record of its public keys.

The formats (verifier keys, key IDs, `AuditKey` and its validity range, the key
record's text) are published and live in `gateway.tlog.keys`; this is the log's side:
loading and generating the Ed25519 private keys it signs checkpoints with, and the
``audit_keys`` table.

Every public key the log has signed with is kept in ``audit_keys`` with the range of
tree sizes it is valid for, ``valid_from_size <= size <= valid_to_size`` (both
inclusive; no end while the key is in service). Rotation (`gateway.audit.rotation`)
works on this record: the new key is registered from the current size while the old
one is still valid, and the old key's end is set (once) some entries later, so
checkpoints in that overlap are signed by both; the database refuses any other
change and any deletion. A verifier counts a signature only from
a key valid for the checkpoint's size, so a retired key that leaks cannot sign new
history.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import ConfigError
from gateway.identity.keys import load_or_create_signing_key, load_private_key_file
from gateway.store.tables import audit_keys
from gateway.tlog.keys import AuditKey, VerifierKey
from gateway.tlog.leaf import format_ts
from gateway.tlog.note import check_key_name

_K = audit_keys.c


class SigningKey:
    """An Ed25519 note signer: the log's key name and its private key."""

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._private_key = private_key
        self.verifier = VerifierKey(name, public)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def __repr__(self) -> str:  # never the private key
        return f"SigningKey({self.verifier.encode()!r})"

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, ed25519.Ed25519PrivateKey.generate())


def load_signing_key(path: str | os.PathLike[str], name: str) -> SigningKey:
    """The audit signing key for log ``name``: loaded from the PEM file at ``path``, or
    generated there (mode 0600) on first start. Raises ConfigError for a file that
    does not hold an Ed25519 private key, ValueError for an invalid key name."""
    check_key_name(name)
    return SigningKey(name, load_or_create_signing_key(path))


def retained_key_path(path: str | os.PathLike[str], key_id: bytes) -> Path:
    """Where `gateway audit rotate-key` keeps a replaced key during its overlap:
    beside ``path``, named by its key ID (``audit-signing.pem`` ->
    ``audit-signing.1a2b3c4d.pem``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{key_id.hex()}{path.suffix}")


def load_signing_keys(path: str | os.PathLike[str], name: str) -> list[SigningKey]:
    """The current key (`load_signing_key`: created when missing) followed by every key
    retained beside it by a rotation (`retained_key_path`), oldest file name order.

    All of them are handed to the checkpointer, which signs with those the key record
    says are valid for the checkpoint's size: a restarted gateway dual-signs during a
    rotation's overlap and stops using the old key after it, with no config change.
    Raises ConfigError for a retained file whose key does not match its name (a file
    dropped there by mistake must not become a signing key of the log)."""
    path = Path(path)
    keys = [load_signing_key(path, name)]
    pattern = re.compile(re.escape(path.stem) + r"\.([0-9a-f]{8})" + re.escape(path.suffix))
    for retained in sorted(path.parent.glob(f"{path.stem}.*{path.suffix}")):
        match = pattern.fullmatch(retained.name)
        if match is None:
            continue
        key = SigningKey(name, _load_existing_ed25519(retained))
        if key.key_id.hex() != match.group(1):
            raise ConfigError(
                f"{retained}: holds audit key {key.key_id.hex()} for {name!r}, not the "
                f"{match.group(1)} its name says; remove or rename it"
            )
        if all(key.key_id != k.key_id for k in keys):
            keys.append(key)
    return keys


def _load_existing_ed25519(path: Path) -> ed25519.Ed25519PrivateKey:
    key = load_private_key_file(path)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path} must hold an Ed25519 private key")
    return key


# --- the audit_keys table ------------------------------------------------------------


def read_keys(conn: Engine | Connection) -> list[AuditKey]:
    """Every registered key, oldest validity first."""
    query = select(audit_keys).order_by(_K.valid_from_size, _K.created, _K.key_id)
    if isinstance(conn, Engine):
        with conn.connect() as c:
            rows = c.execute(query).all()
    else:
        rows = conn.execute(query).all()
    return [
        AuditKey(
            VerifierKey(row.name, bytes(row.public_key)),
            row.valid_from_size,
            row.valid_to_size,
            row.created,
        )
        for row in rows
    ]


def register_key(engine: Engine, key: VerifierKey, *, valid_from_size: int) -> AuditKey:
    """Records ``key`` as valid from ``valid_from_size`` unless it is recorded already;
    returns the stored record (an existing one keeps its range). Safe to race: a
    concurrent registration of the same key is read back."""
    if valid_from_size < 0:
        raise ValueError("valid_from_size must be non-negative")
    row = {
        "name": key.name,
        "key_id": key.key_id,
        "public_key": key.public_key,
        "valid_from_size": valid_from_size,
        "valid_to_size": None,
        "created": format_ts(datetime.now(UTC)),
    }
    existing = _find(engine, key)
    if existing is None:
        try:
            with engine.begin() as conn:
                conn.execute(audit_keys.insert(), row)
        except IntegrityError:
            pass  # another process registered it first; its record stands
        existing = _find(engine, key)
    if existing is None:
        raise RuntimeError(f"audit key {key.encode()} was not stored")
    if existing.verifier.public_key != key.public_key:
        # Same name and key ID, another key: the 4-byte ID collided. Refuse rather
        # than let one record vouch for two keys.
        raise ValueError(f"another public key is registered as {key.name}+{key.key_id.hex()}")
    return existing


def retire_key(engine: Engine, key: VerifierKey, *, valid_to_size: int) -> AuditKey:
    """Sets the last tree size ``key`` is valid for. Once: the database refuses a
    second end or any other change. Raises LookupError for an unknown key, ValueError
    for an end before the start."""
    existing = _find(engine, key)
    if existing is None:
        raise LookupError(f"audit key {key.encode()} is not registered")
    if valid_to_size < existing.valid_from_size:
        raise ValueError(
            f"valid_to_size {valid_to_size} is before valid_from_size {existing.valid_from_size}"
        )
    with engine.begin() as conn:
        conn.execute(
            update(audit_keys)
            .where(_K.name == key.name, _K.key_id == key.key_id)
            .values(valid_to_size=valid_to_size)
        )
    retired = _find(engine, key)
    if retired is None:
        raise RuntimeError(f"audit key {key.encode()} vanished while being retired")
    return retired


def _find(engine: Engine, key: VerifierKey) -> AuditKey | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(audit_keys).where(_K.name == key.name, _K.key_id == key.key_id)
        ).first()
    if row is None:
        return None
    return AuditKey(
        VerifierKey(row.name, bytes(row.public_key)),
        row.valid_from_size,
        row.valid_to_size,
        row.created,
    )
