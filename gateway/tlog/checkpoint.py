"""Checkpoints (C2SP tlog-checkpoint): the signed statement of the tree's size and root.

A checkpoint is a signed note (`gateway.tlog.note`) whose text is exactly::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <base64 of the 32-byte root hash>\\n
    [<extension line>\\n ...]

The gateway writes no extension lines but parses them (non-empty, as the spec
requires), so a verifier does not break on a future one. Parsing is strict: one byte
sequence per checkpoint, so two different texts can never state the same head.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.tlog.errors import CheckpointFormatError, NoteError
from gateway.tlog.keys import AuditKey, verifiers_for
from gateway.tlog.merkle import HASH_SIZE
from gateway.tlog.note import Signer, VerifiedNote, parse_note, sign_note, verify_note

# Tree sizes are unsigned 64-bit integers in every tlog implementation.
MAX_TREE_SIZE = 2**64 - 1


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its size and the root hash at that size."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ValueError("a checkpoint origin must be one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"tree size {self.size} is out of range")
        if len(self.root) != HASH_SIZE:
            raise ValueError(f"a root hash is {HASH_SIZE} bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise ValueError("extension lines must be non-empty single lines")

    def body(self) -> str:
        """The note text."""
        root = base64.b64encode(self.root).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note text (not a signed note: see `open_checkpoint`).
    Raises CheckpointFormatError."""
    if not text.endswith("\n"):
        raise CheckpointFormatError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError(
            f"checkpoint has {len(lines)} lines, needs origin, tree size and root hash"
        )
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointFormatError("checkpoint origin line is empty")
    if not (size_text.isascii() and size_text.isdigit()) or (
        len(size_text) > 1 and size_text[0] == "0"
    ):
        raise CheckpointFormatError(
            f"checkpoint tree size {size_text!r} is not a decimal without leading zeros"
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointFormatError(f"checkpoint tree size {size} exceeds 2^64 - 1")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointFormatError("checkpoint root hash is not base64") from None
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_text:
        raise CheckpointFormatError(
            f"checkpoint root must be the canonical base64 of {HASH_SIZE} bytes"
        )
    if any(not line for line in extensions):
        raise CheckpointFormatError("checkpoint extension lines must not be empty")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed note of ``checkpoint``, one signature per signer."""
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    note: str | bytes, keys: Iterable[AuditKey], *, origin: str
) -> tuple[Checkpoint, VerifiedNote]:
    """Parses a signed checkpoint of log ``origin`` and verifies it: at least one
    signature by a key of ``keys`` valid for the checkpoint's size, and no failing
    one. Signatures by keys not valid for that size count as unknown (ignored).
    Raises CheckpointFormatError, NoteFormatError or NoteSignatureError."""
    parsed = parse_note(note)
    checkpoint = parse_checkpoint(parsed.text)
    if checkpoint.origin != origin:
        raise CheckpointFormatError(
            f"checkpoint is of log {checkpoint.origin!r}, expected {origin!r}"
        )
    try:
        verified = verify_note(parsed, verifiers_for(keys, checkpoint.size))
    except NoteError as exc:
        exc.details.setdefault("tree_size", checkpoint.size)
        raise
    return checkpoint, verified
