"""The tamper-evident audit log (architecture.md §6): appending, reading, proving.

The log's side: the database, the writer, the signing keys. The published formats and
their verification (leaf, Merkle tree, proofs, signed notes, checkpoints, receipts,
the key record, the export directory, the offline verifier) are `gateway.tlog`, which
imports no database layer, so that an auditor's verifier needs none
(docs/decisions/0015). This package re-exports what its callers use of it.

Responsibilities, one module each:

- `records`: `AuditRecord` (what callers append) and `ChainHead`.
- `sequencer`: `AuditLog`, the only writer: group commit, one writer thread per
  process (an idle SQLite log commits on the caller's loop), acknowledgement only
  after commit.
- `writer_thread`: what that thread runs: the queue drained into batches of whole
  calls, one transaction each, the callers woken (and every waiting caller failed if
  the thread dies).
- `waiters`: what a caller of the sequencer waits on (one append's records and its
  future) and how those futures are resolved on their own event loops.
- `batch`: what a batch becomes: prepared records, then under the writer lock the
  chain head, leaves and inserts (`append_rows`, the one implementation).
- `appender`: the writer's kept driver connection and its transaction per batch
  (docs/decisions/0012).
- `reader`: the chain head, seq ranges, the tail, filters.
- `tree_store`: complete subtree hashes in the database, filled up to each checkpoint.
- `keys`: the log's Ed25519 signing keys and the ``audit_keys`` record of its public
  keys and the sizes each may sign.
- `receipt`: receipts (tlog-proof) of stored entries.
- `export`: the export directory written from the database; the database read as a
  `LogSource` for the verifier.
- `erasure`, `rotation`: the operator's changes: erasing a payload, rotating the
  signing key.
- `checkpointer`, `sinks`: signing checkpoints every N entries or T seconds, storing
  and publishing them outside the database.
- `stored_checkpoints`: the stored checkpoints (``audit_checkpoints``) read back: the
  latest, the one of a size, the log's own note of one.
- `witnessing`, `cosignatures`: asking the configured witnesses to cosign each new
  checkpoint (C2SP tlog-witness) and the ``audit_cosignatures`` they answered, added to
  every published copy (docs/decisions/0023).
- `consistency`: consistency proofs between two stored checkpoints, for auditors.
- `search`: finding entries and checking each against the latest checkpoint, for
  `gateway audit search` and the explorer (``GET /v1/audit/entries``).

Invariants:

- Leaves are never rewritten and the chain never forks: ``seq`` is contiguous from 0,
  each ``prev`` is the hash of the leaf before, and the head is read under a
  database-wide writer lock in the transaction that extends it (architecture.md §9.5).
- An append is acknowledged only after its transaction committed; on failure the
  caller gets `gateway.errors.AuditUnavailable` and none of its records exists, so
  nothing is forwarded on the strength of an audit record that is not there (§9.2).
- The records of one append call are contiguous and commit together.
- No record is appended twice: one kept for another try after its COMMIT was cut off
  (`gateway.errors.AuditCommitUnknown`) is appended only if the log does not hold it
  where that COMMIT put it (docs/decisions/0040).
- Payloads are committed to by salted hashes, so erasing one (payload and salt) keeps
  the chain verifiable.
- Checkpoint sizes only grow, and each new checkpoint is proved consistent with the
  previous one before it is signed: the log never signs two views of its history.
- A witness's cosignature is stored only after it verified against the configured
  key; a witness that is down or hangs delays no append and no checkpoint.
"""

from gateway.audit.batch import WRITER_LOCK_KEY
from gateway.audit.checkpointer import Checkpointer
from gateway.audit.keys import (
    SigningKey,
    load_signing_key,
    load_signing_keys,
    read_keys,
    register_key,
    retained_key_path,
    retire_key,
)
from gateway.audit.reader import chain_head, iter_chain_rows, iter_entries, read_entries, tail
from gateway.audit.receipt import receipt_for_entry
from gateway.audit.records import AuditRecord, ChainHead
from gateway.audit.sequencer import AuditLog
from gateway.audit.sinks import CheckpointSink, DirectorySink
from gateway.audit.stored_checkpoints import StoredCheckpoint, latest_checkpoint, read_checkpoint
from gateway.audit.tree_store import TreeStore
from gateway.tlog.chain import verify_chain, verify_chain_rows
from gateway.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from gateway.tlog.entries import AuditEntry, ChainRow
from gateway.tlog.errors import (
    AuditVerificationError,
    ChainError,
    CheckpointFormatError,
    LeafFormatError,
    NoteError,
    NoteFormatError,
    NoteSignatureError,
    ProofError,
    ProofUnavailable,
    ReceiptFormatError,
    RootMismatchError,
)
from gateway.tlog.keys import AuditKey, VerifierKey, format_keys, parse_keys
from gateway.tlog.leaf import (
    ZERO_HASH,
    Leaf,
    build_leaf,
    format_ts,
    leaf_hash,
    parse_leaf,
    payload_commitment,
)
from gateway.tlog.merkle import EMPTY_ROOT, CompactRange, NodeId, node_hash, root
from gateway.tlog.note import sign_note, verify_note
from gateway.tlog.proof import MemoryTree, consistency_proof, inclusion_proof
from gateway.tlog.receipt import parse_receipt, verify_receipt
from gateway.tlog.verify_proof import verify_consistency, verify_inclusion

__all__ = [
    "EMPTY_ROOT",
    "WRITER_LOCK_KEY",
    "ZERO_HASH",
    "AuditEntry",
    "AuditKey",
    "AuditLog",
    "AuditRecord",
    "AuditVerificationError",
    "ChainError",
    "ChainHead",
    "ChainRow",
    "Checkpoint",
    "CheckpointFormatError",
    "CheckpointSink",
    "Checkpointer",
    "CompactRange",
    "DirectorySink",
    "Leaf",
    "LeafFormatError",
    "MemoryTree",
    "NodeId",
    "NoteError",
    "NoteFormatError",
    "NoteSignatureError",
    "ProofError",
    "ProofUnavailable",
    "ReceiptFormatError",
    "RootMismatchError",
    "SigningKey",
    "StoredCheckpoint",
    "TreeStore",
    "VerifierKey",
    "build_leaf",
    "chain_head",
    "consistency_proof",
    "format_keys",
    "format_ts",
    "inclusion_proof",
    "iter_chain_rows",
    "iter_entries",
    "latest_checkpoint",
    "leaf_hash",
    "load_signing_key",
    "load_signing_keys",
    "node_hash",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_keys",
    "parse_leaf",
    "parse_receipt",
    "payload_commitment",
    "read_checkpoint",
    "read_entries",
    "read_keys",
    "receipt_for_entry",
    "register_key",
    "retained_key_path",
    "retire_key",
    "root",
    "sign_checkpoint",
    "sign_note",
    "tail",
    "verify_chain",
    "verify_chain_rows",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
    "verify_receipt",
]
