"""Signed notes (C2SP signed-note): signing, strict parsing, verification.

A signed note is its text (ending in a newline), a blank line, then one or more
signature lines ``— <key name> <base64(4-byte key ID ‖ signature)>``, each ending in a
newline. The signature covers the text including its final newline, not the blank
line. Checkpoints (`gateway.tlog.checkpoint`) are signed notes.

This module knows nothing about key types: a `Signer` and a `Verifier` are anything
with a name, a 4-byte key ID and a sign or verify method (`gateway.tlog.keys`
provides the Ed25519 verifier, `gateway.audit.keys` the log's signer).

Verification rules (the spec's, made strict where it leaves room):

- Anything malformed rejects the whole note: invalid UTF-8, ASCII control
  characters other than newline, a missing blank line, a signature line without the
  em dash prefix, a bad key name, non-canonical base64, more than 100 signatures.
- Signatures by unknown keys (name and key ID not both matching a trusted key) are
  ignored, repeated or not; a key name alone identifies nothing.
- A signature by a trusted key that does not verify rejects the note, and so does a
  trusted key signing twice (a well-behaved signer never does).
- At least one trusted key must have signed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.tlog.errors import NoteFormatError, NoteSignatureError

SIGNATURE_PREFIX = "— "  # em dash U+2014, space
KEY_ID_SIZE = 4
# The spec requires accepting at least 16; the cap bounds the work an untrusted note
# can cause.
MAX_SIGNATURES = 100

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class Signer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name and ID, and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        encoded = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, not yet verified note: its text and every signature line, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    """A note at least one trusted key signed. ``verified`` are the trusted keys'
    signatures (checked); ``unverified`` the ignored ones of unknown keys."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def check_key_name(name: str) -> None:
    """Raises ValueError unless ``name`` is a valid key name: non-empty, no Unicode
    spaces, no plus sign, no control characters."""
    if not isinstance(name, str) or not name:
        raise ValueError("a key name must be a non-empty string")
    if "+" in name or any(ch.isspace() for ch in name) or not name.isprintable():
        raise ValueError(f"key name {name!r} must not contain spaces, '+' or control characters")


def check_text(text: str) -> None:
    """Raises ValueError unless ``text`` can be a note's text: ends with a newline,
    no control characters but newline, encodable as UTF-8."""
    if not text.endswith("\n"):
        raise ValueError("a note text must end with a newline")
    if _CONTROL.search(text):
        raise ValueError("a note text must not contain control characters other than newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a note text must be valid Unicode (no lone surrogates)") from None


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note of ``text`` with one signature line per signer, in order.
    Requires at least one signer; raises ValueError for an invalid text or key name."""
    if not signers:
        raise ValueError("a signed note needs at least one signer")
    check_text(text)
    message = text.encode("utf-8")
    lines = []
    for signer in signers:
        check_key_name(signer.name)
        if len(signer.key_id) != KEY_ID_SIZE:
            raise ValueError(f"key ID of {signer.name!r} must be {KEY_ID_SIZE} bytes")
        signature = NoteSignature(signer.name, signer.key_id, signer.sign(message))
        lines.append(signature.line())
    return text + "\n" + "".join(lines)


def parse_note(data: str | bytes) -> Note:
    """Splits a signed note into text and signature lines, checking the format only.
    Raises NoteFormatError."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteFormatError("note is not valid UTF-8") from None
    if _CONTROL.search(data):
        raise NoteFormatError("note contains control characters other than newline")
    # The text may itself contain blank lines: the signatures follow the last one.
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block:
        raise NoteFormatError("note has no signature lines")
    if not block.endswith("\n"):
        raise NoteFormatError("note's last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteFormatError("note is not valid Unicode") from None
    return Note(text, tuple(_parse_signature(number, line) for number, line in enumerate(lines)))


def verify_note(data: str | bytes | Note, verifiers: Sequence[Verifier]) -> VerifiedNote:
    """Parses (unless given a `Note`) and verifies a signed note against the trusted
    ``verifiers``. Raises NoteFormatError or NoteSignatureError."""
    note = data if isinstance(data, Note) else parse_note(data)
    trusted = {(v.name, bytes(v.key_id)): v for v in verifiers}
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for signature in note.signatures:
        verifier = trusted.get((signature.name, signature.key_id))
        if verifier is None:
            unverified.append(signature)
            continue
        if any(s.name == signature.name and s.key_id == signature.key_id for s in verified):
            raise NoteFormatError(
                f"note is signed twice by key {signature.name}+{signature.key_id.hex()}"
            )
        if not verifier.verify(message, signature.signature):
            raise NoteSignatureError(
                f"signature by trusted key {signature.name}+{signature.key_id.hex()} "
                "does not verify"
            )
        verified.append(signature)
    if not verified:
        names = sorted({f"{s.name}+{s.key_id.hex()}" for s in note.signatures})
        raise NoteSignatureError(
            f"note is not signed by any trusted key (signed by {', '.join(names)})"
        )
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def _parse_signature(number: int, line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteFormatError(f"signature line {number} does not start with '— '")
    name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise NoteFormatError(f"signature line {number} has no signature after the key name")
    try:
        check_key_name(name)
    except ValueError as exc:
        raise NoteFormatError(f"signature line {number}: {exc}") from None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise NoteFormatError(f"signature line {number}: signature is not base64") from None
    # One spelling per signature: padding bits and '=' must be canonical.
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise NoteFormatError(f"signature line {number}: signature is not canonical base64")
    if len(raw) <= KEY_ID_SIZE:
        raise NoteFormatError(f"signature line {number}: signature is too short")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])
