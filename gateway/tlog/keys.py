"""Audit verifier keys: Ed25519 note keys, their IDs, and the tree sizes each may sign.

Checkpoints are signed with Ed25519 per C2SP signed-note (signature type 0x01); the
key name is the log's origin (architecture.md §6). The key ID is
``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``; a verifier key is written
``<name>+<8 hex digits of the key ID>+<base64(0x01 ‖ public key)>``.

Every public key the log has signed with comes with the range of tree sizes it is
valid for, ``valid_from_size <= size <= valid_to_size`` (both inclusive; no end while
the key is in service): an `AuditKey`, one line of the key record an export carries
and an auditor is given (`format_keys`, `parse_keys`). A verifier counts a signature
only from a key valid for the checkpoint's size, so a retired key that leaks cannot
sign new history. The private keys and the record in the database are the log's
side (`gateway.audit.keys`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.tlog.note import KEY_ID_SIZE, check_key_name

SIGNATURE_TYPE_ED25519 = b"\x01"
PUBLIC_KEY_SIZE = 32


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
