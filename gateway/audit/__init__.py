"""The tamper-evident audit log (architecture.md §6): leaf format, sequencer, reading, verifying.

Responsibilities, one module each:

- `leaf`: the version-1 leaf bytes, leaf hash and payload commitment (pure functions;
  the published format).
- `records`: `AuditRecord` (what callers append) and `AuditEntry` (what is read back).
- `sequencer`: `AuditLog`, the only writer: group commit, one writer thread per
  process (an idle SQLite log commits on the caller's loop), acknowledgement only
  after commit.
- `batch`: what a batch becomes: prepared records, then under the writer lock the
  chain head, leaves and inserts (`append_rows`, the one implementation).
- `appender`: the writer's kept driver connection and its transaction per batch
  (docs/decisions/0012).
- `reader`: the chain head, seq ranges, the tail, filters.
- `chain`: `verify_chain` / `verify_chain_rows`, the hash-chain half of the offline
  verifier.
- `merkle`: RFC 6962/9162 node hashing, tree shape (`NodeId`, `range_nodes`), roots.
- `proof`: building inclusion and consistency proofs from a `NodeSource`.
- `verify_proof`: RFC 9162 proof verification (`verify_inclusion`, `verify_consistency`).
- `tree_store`: complete subtree hashes in the database, filled up to each checkpoint.
- `note`, `keys`: C2SP signed notes; Ed25519 audit keys and the sizes each may sign.
- `checkpoint`, `receipt`: the C2SP tlog-checkpoint and tlog-proof formats.
- `erasure`, `rotation`: the operator's changes: erasing a payload, rotating the
  signing key.
- `checkpointer`, `sinks`: signing checkpoints every N entries or T seconds, storing
  and publishing them outside the database.
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
- Payloads are committed to by salted hashes, so erasing one (payload and salt) keeps
  the chain verifiable.
- Checkpoint sizes only grow, and each new checkpoint is proved consistent with the
  previous one before it is signed: the log never signs two views of its history.
"""

from gateway.audit.batch import WRITER_LOCK_KEY
from gateway.audit.chain import verify_chain, verify_chain_rows
from gateway.audit.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from gateway.audit.checkpointer import (
    Checkpointer,
    StoredCheckpoint,
    latest_checkpoint,
    read_checkpoint,
)
from gateway.audit.errors import (
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
from gateway.audit.keys import (
    AuditKey,
    SigningKey,
    VerifierKey,
    format_keys,
    load_signing_key,
    load_signing_keys,
    parse_keys,
    read_keys,
    register_key,
    retained_key_path,
    retire_key,
)
from gateway.audit.leaf import (
    ZERO_HASH,
    Leaf,
    build_leaf,
    format_ts,
    leaf_hash,
    parse_leaf,
    payload_commitment,
)
from gateway.audit.merkle import EMPTY_ROOT, CompactRange, NodeId, node_hash, root
from gateway.audit.note import sign_note, verify_note
from gateway.audit.proof import MemoryTree, consistency_proof, inclusion_proof
from gateway.audit.reader import chain_head, iter_chain_rows, iter_entries, read_entries, tail
from gateway.audit.receipt import parse_receipt, receipt_for_entry, verify_receipt
from gateway.audit.records import AuditEntry, AuditRecord, ChainHead, ChainRow
from gateway.audit.sequencer import AuditLog
from gateway.audit.sinks import CheckpointSink, DirectorySink
from gateway.audit.tree_store import TreeStore
from gateway.audit.verify_proof import verify_consistency, verify_inclusion

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
