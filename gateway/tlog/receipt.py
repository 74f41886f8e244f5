"""Per-entry receipts (C2SP tlog-proof): an entry's inclusion proof and a checkpoint.

A receipt lets anyone holding the log's public key check, offline, that one entry is
in the log at the size a signed checkpoint states::

    c2sp.org/tlog-proof@v1\\n
    [extra <base64 opaque data>\\n]
    index <leaf index, decimal, no leading zeros>\\n
    <base64 inclusion proof hash>\\n      (zero or more: leaf's sibling first)
    \\n
    <the signed checkpoint note, verbatim>

The gateway writes no ``extra`` line; the parser accepts one (non-empty canonical
base64) and never trusts it. The entry itself is not in the receipt: the verifier
is given the leaf bytes and hashes them. Making a receipt of a stored entry is the
log's side (`gateway.audit.receipt`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from gateway.tlog.errors import (
    CheckpointFormatError,
    LeafFormatError,
    NoteFormatError,
    ProofError,
    ReceiptFormatError,
)
from gateway.tlog.keys import AuditKey
from gateway.tlog.leaf import HASH_SIZE, leaf_hash, parse_leaf
from gateway.tlog.note import parse_note
from gateway.tlog.verify_proof import verify_inclusion

RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class Receipt:
    """A parsed receipt: ``checkpoint`` is the signed note text, unverified."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def text(self) -> str:
        lines = [RECEIPT_HEADER]
        if self.extra is not None:
            lines.append("extra " + _b64(self.extra))
        lines.append(f"index {self.index}")
        lines.extend(_b64(h) for h in self.proof)
        return "\n".join(lines) + "\n\n" + self.checkpoint


def format_receipt(
    index: int, proof: Sequence[bytes], checkpoint_note: str, *, extra: bytes | None = None
) -> str:
    """The receipt text; checks that every part is well-formed first."""
    receipt = Receipt(index, tuple(proof), checkpoint_note, extra)
    text = receipt.text()
    parse_receipt(text)  # one grammar for writing and reading
    return text


def parse_receipt(text: str | bytes) -> Receipt:
    """Parses a receipt strictly, its checkpoint's format included (not its
    signatures: see `verify_receipt`). Raises ReceiptFormatError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ReceiptFormatError("receipt is not valid UTF-8") from None
    head, separator, note = text.partition("\n\n")
    if not separator:
        raise ReceiptFormatError("receipt has no blank line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != RECEIPT_HEADER:
        raise ReceiptFormatError(f"receipt must start with the line {RECEIPT_HEADER!r}")
    position = 1
    extra = None
    if position < len(lines) and lines[position].startswith("extra "):
        extra = _decode(lines[position].removeprefix("extra "), "extra data")
        if not extra:
            raise ReceiptFormatError("receipt extra line holds no data")
        position += 1
    if position >= len(lines) or not lines[position].startswith("index "):
        raise ReceiptFormatError("receipt has no 'index <N>' line after its header")
    index_text = lines[position].removeprefix("index ")
    if not (index_text.isascii() and index_text.isdigit()) or (
        len(index_text) > 1 and index_text[0] == "0"
    ):
        raise ReceiptFormatError(f"receipt index {index_text!r} is not a canonical decimal")
    proof = []
    for number, line in enumerate(lines[position + 1 :]):
        value = _decode(line, f"proof hash {number}")
        if len(value) != HASH_SIZE:
            raise ReceiptFormatError(f"receipt proof hash {number} is not {HASH_SIZE} bytes")
        proof.append(value)
    try:
        parse_checkpoint(parse_note(note).text)
    except (NoteFormatError, CheckpointFormatError) as exc:
        raise ReceiptFormatError(f"receipt checkpoint is malformed: {exc.message}") from None
    return Receipt(int(index_text), tuple(proof), note, extra)


def verify_receipt(
    receipt: str | bytes | Receipt, leaf: bytes, *, origin: str, keys: Iterable[AuditKey]
) -> Checkpoint:
    """Checks that ``leaf`` (the entry's leaf bytes) is entry ``index`` of log
    ``origin`` in the tree of a checkpoint signed by a key of ``keys`` valid for its
    size; returns that checkpoint. Raises a subclass of AuditVerificationError."""
    parsed = receipt if isinstance(receipt, Receipt) else parse_receipt(receipt)
    checkpoint, _ = open_checkpoint(parsed.checkpoint, keys, origin=origin)
    try:
        fields = parse_leaf(leaf)
    except LeafFormatError as exc:
        raise ProofError(f"the entry is not a valid leaf: {exc.message}") from None
    if fields.log != origin or fields.seq != parsed.index:
        raise ProofError(
            f"the entry is seq {fields.seq} of log {fields.log!r}, but the receipt is for "
            f"index {parsed.index} of {origin!r}"
        )
    verify_inclusion(leaf_hash(leaf), parsed.index, checkpoint.size, parsed.proof, checkpoint.root)
    return checkpoint


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode(text: str, what: str) -> bytes:
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptFormatError(f"receipt {what} is not base64") from None
    if _b64(value) != text:
        raise ReceiptFormatError(f"receipt {what} is not canonical base64")
    return value
