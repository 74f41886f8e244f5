"""Consistency proofs between two checkpoints, in the form of a tlog-witness request.

The text is exactly the body of a C2SP tlog-witness ``add-checkpoint`` request, so
one grammar serves an auditor's proof file (`gateway audit prove --consistency`),
``GET /v1/audit/proof/consistency`` and what the gateway sends its witnesses::

    old <size of the older tree, decimal, no leading zeros>\\n
    <base64 consistency proof hash>\\n     (zero to 63 lines, RFC 9162 §2.1.4 order)
    \\n
    <the newer signed checkpoint, verbatim>

The older checkpoint is not in the text: the verifier brings one it trusts, and the
proof shows the newer one extends it (`verify_consistency_proof`). A witness keeps
the older tree head itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from gateway.tlog.errors import (
    CheckpointFormatError,
    NoteFormatError,
    ProofError,
    ReceiptFormatError,
)
from gateway.tlog.keys import AuditKey
from gateway.tlog.merkle import HASH_SIZE
from gateway.tlog.note import parse_note
from gateway.tlog.verify_proof import verify_consistency

# tlog-witness: a client MUST NOT send more than 63 proof lines (a 2^64 tree needs
# at most 63 hashes beyond the seed).
MAX_PROOF_LINES = 63


class ConsistencyFormatError(ReceiptFormatError):
    """Text that is not a well-formed consistency proof (add-checkpoint body)."""

    code = "audit_consistency_malformed"


@dataclass(frozen=True)
class ConsistencyProof:
    """A parsed proof: from ``old_size`` to the checkpoint in ``note`` (unverified)."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint

    def text(self) -> str:
        lines = [f"old {self.old_size}", *(_b64(h) for h in self.proof)]
        return "".join(line + "\n" for line in lines) + "\n" + self.note


def format_consistency_proof(old_size: int, proof: Sequence[bytes], note: str) -> str:
    """The text of a proof from ``old_size`` to the signed checkpoint ``note``; checks
    that it parses back (one grammar for writing and reading)."""
    checkpoint = parse_checkpoint(parse_note(note).text)
    text = ConsistencyProof(old_size, tuple(proof), note, checkpoint).text()
    parse_consistency_proof(text)
    return text


def parse_consistency_proof(text: str | bytes) -> ConsistencyProof:
    """Parses strictly, the checkpoint's format included (not its signatures).
    Raises ConsistencyFormatError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConsistencyFormatError("consistency proof is not valid UTF-8") from None
    head, separator, note = text.partition("\n\n")
    if not separator:
        raise ConsistencyFormatError("no blank line between the proof and the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise ConsistencyFormatError("the first line must be 'old <tree size>'")
    old_text = lines[0].removeprefix("old ")
    if not (old_text.isascii() and old_text.isdigit()) or (
        len(old_text) > 1 and old_text[0] == "0"
    ):
        raise ConsistencyFormatError(
            f"old size {old_text!r} is not a decimal without leading zeros"
        )
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ConsistencyFormatError(
            f"{len(lines) - 1} proof lines, at most {MAX_PROOF_LINES} are allowed"
        )
    proof = []
    for number, line in enumerate(lines[1:]):
        try:
            value = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise ConsistencyFormatError(f"proof line {number} is not base64") from None
        if len(value) != HASH_SIZE or _b64(value) != line:
            raise ConsistencyFormatError(
                f"proof line {number} is not the canonical base64 of {HASH_SIZE} bytes"
            )
        proof.append(value)
    try:
        checkpoint = parse_checkpoint(parse_note(note).text)
    except (NoteFormatError, CheckpointFormatError) as exc:
        raise ConsistencyFormatError(f"the checkpoint is malformed: {exc.message}") from None
    return ConsistencyProof(int(old_text), tuple(proof), note, checkpoint)


def verify_consistency_proof(
    proof: str | bytes | ConsistencyProof,
    trusted: str,
    *,
    keys: Iterable[AuditKey],
    origin: str,
) -> tuple[Checkpoint, Checkpoint]:
    """Checks that the proof's checkpoint extends ``trusted`` (a signed checkpoint the
    auditor kept): both are of log ``origin`` and signed by a key of ``keys`` valid
    for their sizes, the proof starts at the trusted size, and it leads from the
    trusted root to the new one. Returns (trusted, new). Raises a subclass of
    AuditVerificationError."""
    keys = list(keys)
    parsed = proof if isinstance(proof, ConsistencyProof) else parse_consistency_proof(proof)
    old, _ = open_checkpoint(trusted, keys, origin=origin)
    new, _ = open_checkpoint(parsed.note, keys, origin=origin)
    if parsed.old_size != old.size:
        raise ProofError(
            f"the proof starts at tree size {parsed.old_size}, the trusted checkpoint is of "
            f"size {old.size}"
        )
    verify_consistency(old.size, new.size, parsed.proof, old.root, new.root)
    return old, new


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
