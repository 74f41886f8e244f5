"""Audit signing keys: Ed25519 note keys, their IDs, and the tree sizes each may sign.

Checkpoints are signed with Ed25519 per C2SP signed-note (signature type 0x01); the
key name is the log's origin (architecture.md §6). The key ID is
``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``; a verifier key is written
``<name>+<8 hex digits of the key ID>+<base64(0x01 ‖ public key)>``.

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

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from gateway.audit.leaf import format_ts
from gateway.audit.note import KEY_ID_SIZE, check_key_name
from gateway.errors import ConfigError
from gateway.identity.keys import load_or_create_signing_key, load_private_key_file
from gateway.store.tables import audit_keys

SIGNATURE_TYPE_ED25519 = b"\x01"
PUBLIC_KEY_SIZE = 32

_K = audit_keys.c


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4] (C2SP signed-note, Ed25519)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + SIGNATURE_TYPE_ED25519 + public_key)
    return digest.digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 note verifier: a key name and a 32-byte public key."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        object.__setattr__(self, "key_id", ed25519_key_id(self.name, self.public_key))

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def encode(self) -> str:
        """``<name>+<hex key ID>+<base64(0x01 ‖ public key)>``."""
        blob = base64.b64encode(SIGNATURE_TYPE_ED25519 + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """The inverse of `encode`; raises ValueError unless ``text`` is exactly a
        canonical Ed25519 verifier key whose key ID matches its name and key."""
        # Names cannot contain '+' and hex cannot either; base64 can: split from the left.
        name, _, rest = text.partition("+")
        key_hex, _, rest = rest.partition("+")
        try:
            blob = base64.b64decode(rest, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"verifier key {text!r}: key is not base64") from None
        if not name or base64.b64encode(blob).decode("ascii") != rest:
            raise ValueError(f"verifier key {text!r} is not <name>+<key id>+<base64 key>")
        if blob[:1] != SIGNATURE_TYPE_ED25519 or len(blob) != 1 + PUBLIC_KEY_SIZE:
            raise ValueError(f"verifier key {text!r} is not an Ed25519 (type 0x01) key")
        key = cls(name, blob[1:])
        if key_hex != key.key_id.hex():
            raise ValueError(f"verifier key {text!r}: key ID does not match name and key")
        return key


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


@dataclass(frozen=True)
class AuditKey:
    """A public key of the log and the tree sizes it is valid for (both inclusive;
    ``valid_to_size`` None while the key is in service)."""

    verifier: VerifierKey
    valid_from_size: int
    valid_to_size: int | None
    created: str = ""

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def covers(self, tree_size: int) -> bool:
        return self.valid_from_size <= tree_size and (
            self.valid_to_size is None or tree_size <= self.valid_to_size
        )

    def line(self) -> str:
        """``<verifier key> <valid_from_size> <valid_to_size or ->`` (the export)."""
        end = "-" if self.valid_to_size is None else str(self.valid_to_size)
        return f"{self.verifier.encode()} {self.valid_from_size} {end}\n"


def verifiers_for(keys: Iterable[AuditKey], tree_size: int) -> list[VerifierKey]:
    """The verifiers of the keys valid for a checkpoint of ``tree_size``."""
    return [k.verifier for k in keys if k.covers(tree_size)]


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


def format_keys(keys: Sequence[AuditKey]) -> str:
    """The export of the key record: one `AuditKey.line` per key."""
    return "".join(k.line() for k in keys)


def parse_keys(text: str) -> list[AuditKey]:
    """The inverse of `format_keys`. Raises ValueError naming the bad line."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split(" ")
        if len(parts) != 3:
            raise ValueError(f"key line {number}: want '<verifier key> <from> <to or ->'")
        try:
            verifier = VerifierKey.parse(parts[0])
            start = _decimal(parts[1])
            end = None if parts[2] == "-" else _decimal(parts[2])
        except ValueError as exc:
            raise ValueError(f"key line {number}: {exc}") from None
        keys.append(AuditKey(verifier, start, end))
    return keys


def _decimal(text: str) -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"{text!r} is not a decimal tree size")
    return int(text)


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
