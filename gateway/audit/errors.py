"""Verification failures of the audit log: one root, one subclass per kind of fault.

Appending failures are `gateway.errors.AuditUnavailable`; these are about checking
what was appended.
"""

from __future__ import annotations

from gateway.errors import GatewayError


class AuditVerificationError(GatewayError):
    """Root of every audit verification failure."""

    code = "audit_verification_failed"


class LeafFormatError(AuditVerificationError):
    """Bytes that are not a well-formed, canonical version-1 leaf."""

    code = "audit_leaf_invalid"


class ChainError(AuditVerificationError):
    """The first fault found in a sequence of entries, at entry ``seq``.

    ``seq`` is the position the verifier expected (or the entry's own seq when that
    is what is wrong); ``None`` when the fault is not tied to one entry.
    """

    code = "audit_chain_invalid"

    def __init__(self, seq: int | None, message: str) -> None:
        where = "audit chain" if seq is None else f"audit entry {seq}"
        super().__init__(f"{where}: {message}", details={"seq": seq})
        self.seq = seq
        self.reason = message


class ProofError(AuditVerificationError):
    """A Merkle inclusion or consistency proof that does not verify, or whose inputs
    break a precondition (index beyond the tree, wrong number of hashes, …)."""

    code = "audit_proof_invalid"


class RootMismatchError(ProofError):
    """The proof is well-formed but leads to another root than the one expected."""

    code = "audit_root_mismatch"

    def __init__(self, expected: bytes, calculated: bytes, what: str = "root") -> None:
        super().__init__(
            f"{what} mismatch: expected {expected.hex() or '(empty)'}, "
            f"calculated {calculated.hex()}",
            details={"expected": expected.hex(), "calculated": calculated.hex()},
        )
        self.expected = expected
        self.calculated = calculated


class NoteError(AuditVerificationError):
    """A signed note (C2SP signed-note) that is malformed or not signed by a trusted key."""

    code = "audit_note_invalid"


class NoteFormatError(NoteError):
    """Bytes that are not a well-formed signed note."""

    code = "audit_note_malformed"


class NoteSignatureError(NoteError):
    """No trusted key signed the note, or a trusted key's signature does not verify."""

    code = "audit_note_unverified"


class CheckpointFormatError(AuditVerificationError):
    """A note text that is not a well-formed checkpoint (C2SP tlog-checkpoint), or one
    of another log."""

    code = "audit_checkpoint_malformed"


class ReceiptFormatError(AuditVerificationError):
    """Text that is not a well-formed receipt (C2SP tlog-proof)."""

    code = "audit_receipt_malformed"


class ProofUnavailable(GatewayError):
    """The proof or checkpoint asked for cannot be built (yet): the tree store does not
    hold that tree size, or no checkpoint covers it."""

    code = "audit_proof_unavailable"
    http_status = 404
