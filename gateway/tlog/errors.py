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


class AuditEntryNotFound(GatewayError):
    """No entry of the seq asked for (yet)."""

    code = "audit_entry_not_found"
    http_status = 404


class CheckpointError(AuditVerificationError):
    """A signed checkpoint that fails verification: malformed, not signed by a key
    valid for its size, or stating a root the leaves do not have. ``checkpoint`` names
    it (a stored size, a file), ``size`` is its tree size when it could be read."""

    code = "audit_checkpoint_invalid"

    def __init__(self, checkpoint: str, size: int | None, message: str) -> None:
        super().__init__(
            f"{checkpoint}: {message}", details={"checkpoint": checkpoint, "size": size}
        )
        self.checkpoint = checkpoint
        self.size = size
        self.reason = message


class ForkError(CheckpointError):
    """Two validly signed checkpoints of one size with different roots: the log
    showed two histories."""

    code = "audit_fork"


class TruncationError(CheckpointError):
    """A validly signed checkpoint is larger than the log: entries were removed."""

    code = "audit_truncated"


class WitnessQuorumError(CheckpointError):
    """The checkpoint an auditor relies on lacks the cosignatures required of the
    named witnesses (or one of theirs does not verify): nobody independent vouched
    that it is the one history everybody is shown."""

    code = "audit_not_witnessed"


class CallTraceError(AuditVerificationError):
    """An entry whose required predecessor is missing: a ``call.outcome`` without an
    allowing ``call.decision`` of its ref, or naming an approval never approved."""

    code = "audit_trace_incomplete"

    def __init__(self, seq: int, message: str) -> None:
        super().__init__(f"audit entry {seq}: {message}", details={"seq": seq})
        self.seq = seq
        self.reason = message
