"""The audit log's published formats and their verification, standing alone.

What an auditor needs to check the log offline, and nothing of the database or the
signing side (docs/decisions/0015, sigstore-python's ``verify/``): `gateway audit
verify DIR` and `gateway audit verify-receipt` import this package and no SQLAlchemy.
The log's side (appending, the database, the signing keys) is `gateway.audit`, which
builds on this one.

Responsibilities, one module each (RFC terms as written: ``leaf_hash``,
``tree_size``):

- `leaf`: the version-1 leaf bytes, leaf hash and payload commitment.
- `entries`: `AuditEntry` and `ChainRow`, what a reader gets of one entry.
- `chain`: `verify_chain` / `verify_chain_rows`, the hash-chain half of the verifier.
- `merkle`: RFC 6962/9162 node hashing, tree shape (`NodeId`, `range_nodes`), roots.
- `proof`: building inclusion and consistency proofs from a `NodeSource`.
- `verify_proof`: RFC 9162 proof verification (`verify_inclusion`,
  `verify_consistency`).
- `note`, `checkpoint`, `receipt`: C2SP signed notes, tlog-checkpoint and tlog-proof.
- `consistency`: consistency proofs between two checkpoints, in the form of a
  tlog-witness add-checkpoint request; `cosignature`: witnesses' tlog-cosignatures
  (Ed25519 cosignature/v1) and the quorum check.
- `keys`: Ed25519 verifier keys, their IDs, and the key record (`AuditKey`: the tree
  sizes each key may sign).
- `source`: `LogSource`, what the offline verifier reads, and an export directory
  read as one.
- `verifier`: `verify_log`, the offline verifier.
- `errors`: `AuditVerificationError` and its kinds, each with a stable code.

Invariants:

- Imports nothing of `gateway.store`, `gateway.audit` or SQLAlchemy (a test imports
  the verify path in a fresh interpreter and checks).
- Every check is made from the bytes (leaf, note, proof), never from a stored or
  parsed copy; a verification function raises on failure (a forgotten ``if`` cannot
  turn a failure into success).
- Changing any byte of a format is a new format version: these are contracts with
  auditors.
"""

from gateway.tlog.chain import ERASURE_KIND, verify_chain, verify_chain_rows
from gateway.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from gateway.tlog.entries import AuditEntry, ChainRow
from gateway.tlog.errors import AuditVerificationError
from gateway.tlog.keys import AuditKey, VerifierKey, format_keys, parse_keys
from gateway.tlog.leaf import build_leaf, leaf_hash, parse_leaf, payload_commitment
from gateway.tlog.merkle import NodeId, node_hash, root
from gateway.tlog.note import sign_note, verify_note
from gateway.tlog.proof import MemoryTree, consistency_proof, inclusion_proof
from gateway.tlog.receipt import Receipt, format_receipt, parse_receipt, verify_receipt
from gateway.tlog.source import LogSource, directory_source
from gateway.tlog.verifier import VerificationReport, verify_log
from gateway.tlog.verify_proof import verify_consistency, verify_inclusion

__all__ = [
    "ERASURE_KIND",
    "AuditEntry",
    "AuditKey",
    "AuditVerificationError",
    "ChainRow",
    "Checkpoint",
    "LogSource",
    "MemoryTree",
    "NodeId",
    "Receipt",
    "VerificationReport",
    "VerifierKey",
    "build_leaf",
    "consistency_proof",
    "directory_source",
    "format_keys",
    "format_receipt",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_keys",
    "parse_leaf",
    "parse_receipt",
    "payload_commitment",
    "root",
    "sign_checkpoint",
    "sign_note",
    "verify_chain",
    "verify_chain_rows",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
    "verify_note",
    "verify_receipt",
]
