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
