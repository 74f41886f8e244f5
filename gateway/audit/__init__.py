"""The tamper-evident audit log (DESIGN §6): leaf format, sequencer, reading, verifying.

Responsibilities, one module each:

- `leaf`: the version-1 leaf bytes, leaf hash and payload commitment (pure functions;
  the published format).
- `records`: `AuditRecord` (what callers append) and `AuditEntry` (what is read back).
- `sequencer`: `AuditLog`, the only writer: group commit, one writer thread per
  process, acknowledgement only after commit.
- `batch`: one batch as one transaction: writer lock, chain head, leaves, inserts.
- `reader`: the chain head, seq ranges, the tail, filters.
- `chain`: `verify_chain`, the hash-chain half of the offline verifier.

Invariants:

- Leaves are never rewritten and the chain never forks: ``seq`` is contiguous from 0,
  each ``prev`` is the hash of the leaf before, and the head is read under a
  database-wide writer lock in the transaction that extends it (DESIGN §9.5).
- An append is acknowledged only after its transaction committed; on failure the
  caller gets `gateway.errors.AuditUnavailable` and none of its records exists, so
  nothing is forwarded on the strength of an audit record that is not there (§9.2).
- The records of one append call are contiguous and commit together.
- Payloads are committed to by salted hashes, so erasing one (payload and salt) keeps
  the chain verifiable.
"""

from gateway.audit.batch import WRITER_LOCK_KEY
from gateway.audit.chain import verify_chain
from gateway.audit.errors import AuditVerificationError, ChainError, LeafFormatError
from gateway.audit.leaf import (
    ZERO_HASH,
    Leaf,
    build_leaf,
    format_ts,
    leaf_hash,
    parse_leaf,
    payload_commitment,
)
from gateway.audit.reader import chain_head, iter_entries, read_entries, tail
from gateway.audit.records import AuditEntry, AuditRecord, ChainHead
from gateway.audit.sequencer import AuditLog

__all__ = [
    "WRITER_LOCK_KEY",
    "ZERO_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "AuditVerificationError",
    "ChainError",
    "ChainHead",
    "Leaf",
    "LeafFormatError",
    "build_leaf",
    "chain_head",
    "format_ts",
    "iter_entries",
    "leaf_hash",
    "parse_leaf",
    "payload_commitment",
    "read_entries",
    "tail",
    "verify_chain",
]
