"""Witness cosignatures (C2SP tlog-cosignature, Ed25519 ``cosignature/v1``).

A cosignature is a signed-note signature line on a checkpoint, by a witness that
verified the checkpoint is consistent with every earlier one it saw of that log:

    — <witness name> base64(key ID ‖ timestamp ‖ Ed25519 signature)

- key ID = SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4] (type 0x04, not the
  0x01 of a plain note key: a log key cannot pass for a witness and back);
- timestamp: 8 bytes, big-endian POSIX seconds (at most 2^63 - 1);
- the signed message is ``cosignature/v1\\n`` ``time <timestamp>\\n`` followed by the
  checkpoint's note text (with its final newline, without any signature line).

A witness's public key is written as a verifier key with type 0x04:
``<name>+<key ID hex>+<base64(0x04 ‖ public key)>`` (`WitnessKey.encode`).

`cosign` makes a line from a private key (the witness's side passes its key as a
`note.Signer`-like object); `verify_cosignatures` counts the named witnesses whose
cosignature on a note verifies. Both are pinned against transparency-dev/formats
(tests/unit/tlog/test_tlog_cosignature.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.tlog.errors import NoteFormatError, NoteSignatureError
from gateway.tlog.keys import PUBLIC_KEY_SIZE
from gateway.tlog.note import KEY_ID_SIZE, Note, NoteSignature, check_key_name, parse_note

SIGNATURE_TYPE_COSIGNATURE_V1 = b"\x04"
HEADER = "cosignature/v1\n"
TIMESTAMP_SIZE = 8
SIGNATURE_SIZE = 64
MAX_TIMESTAMP = 2**63 - 1


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + SIGNATURE_TYPE_COSIGNATURE_V1 + public_key
    )
    return digest.digest()[:KEY_ID_SIZE]


def signed_message(note_text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header, the time line and the note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is out of range")
    return f"{HEADER}time {timestamp}\n{note_text}".encode()


@dataclass(frozen=True)
class WitnessKey:
    """A witness's Ed25519 cosignature/v1 public key and its name."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        object.__setattr__(self, "key_id", cosignature_key_id(self.name, self.public_key))

    def encode(self) -> str:
        """``<name>+<hex key ID>+<base64(0x04 ‖ public key)>``."""
        blob = base64.b64encode(SIGNATURE_TYPE_COSIGNATURE_V1 + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str) -> WitnessKey:
        """The inverse of `encode`. Raises ValueError unless ``text`` is exactly a
        canonical type-0x04 verifier key whose key ID matches its name and key."""
        name, _, rest = text.partition("+")
        key_hex, _, blob_text = rest.partition("+")
        try:
            blob = base64.b64decode(blob_text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"witness key {text!r}: key is not base64") from None
        if not name or base64.b64encode(blob).decode("ascii") != blob_text:
            raise ValueError(f"witness key {text!r} is not <name>+<key id>+<base64 key>")
        if blob[:1] != SIGNATURE_TYPE_COSIGNATURE_V1 or len(blob) != 1 + PUBLIC_KEY_SIZE:
            raise ValueError(
                f"witness key {text!r} is not an Ed25519 cosignature/v1 (type 0x04) key"
            )
        key = cls(name, blob[1:])
        if key_hex != key.key_id.hex():
            raise ValueError(f"witness key {text!r}: key ID does not match name and key")
        return key

    def verify(self, note_text: str, signature: bytes) -> int:
        """The timestamp of a valid cosignature by this key on ``note_text``. Raises
        NoteSignatureError when it does not verify."""
        if len(signature) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
            raise NoteSignatureError(
                f"cosignature by {self.name} is {len(signature)} bytes, want "
                f"{TIMESTAMP_SIZE + SIGNATURE_SIZE}"
            )
        timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            raise NoteSignatureError(f"cosignature by {self.name} has an invalid timestamp")
        public = ed25519.Ed25519PublicKey.from_public_bytes(self.public_key)
        try:
            public.verify(signature[TIMESTAMP_SIZE:], signed_message(note_text, timestamp))
        except InvalidSignature:
            raise NoteSignatureError(
                f"cosignature by witness {self.name}+{self.key_id.hex()} does not verify"
            ) from None
        return timestamp


class RawSigner(Protocol):
    """An Ed25519 private key: signs bytes."""

    def sign(self, data: bytes) -> bytes: ...


def cosign(note_text: str, key: WitnessKey, signer: RawSigner, timestamp: int) -> NoteSignature:
    """The cosignature/v1 of ``note_text`` (a checkpoint's text) at ``timestamp`` by the
    private key ``signer`` whose public key is ``key``."""
    signature = signer.sign(signed_message(note_text, timestamp))
    return NoteSignature(
        key.name, key.key_id, timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
    )


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: whose, when, and its signature line."""

    witness: WitnessKey
    timestamp: int
    line: str


def verify_cosignatures(
    note: str | bytes | Note, witnesses: Sequence[WitnessKey], *, minimum: int
) -> list[Cosignature]:
    """The valid cosignatures on ``note`` by ``witnesses`` (one per witness), if there
    are at least ``minimum``. Lines of other keys (the log's own, unknown witnesses)
    are ignored; a named witness's line that does not verify, or a witness signing
    twice, rejects the note, as `note.verify_note` treats a trusted key. Raises
    NoteFormatError or NoteSignatureError (too few, naming who signed)."""
    if minimum < 1:
        # Zero required cosignatures would make the check pass on anything.
        raise ValueError("the minimum number of cosignatures must be at least 1")
    parsed = note if isinstance(note, Note) else parse_note(note)
    trusted = {(w.name, w.key_id): w for w in witnesses}
    found: dict[tuple[str, bytes], Cosignature] = {}
    for signature in parsed.signatures:
        ident = (signature.name, signature.key_id)
        witness = trusted.get(ident)
        if witness is None:
            continue
        if ident in found:
            raise NoteFormatError(f"note is cosigned twice by witness {witness.name}")
        timestamp = witness.verify(parsed.text, signature.signature)
        found[ident] = Cosignature(witness, timestamp, signature.line())
    if len(found) < minimum:
        have = ", ".join(sorted(c.witness.name for c in found.values())) or "none"
        raise NoteSignatureError(
            f"checkpoint has {len(found)} valid cosignatures of the named witnesses, "
            f"{minimum} required (cosigned by: {have})"
        )
    return list(found.values())
