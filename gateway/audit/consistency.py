"""Consistency proofs between two stored checkpoints (RFC 9162 §2.1.4), for auditors.

`consistency_between(engine, N, M)` proves that the checkpoint of size M extends the
one of size N, from the tree store, and checks the proof against both signed roots
before handing it out (as receipts are checked): a damaged tree store fails here,
loudly, never in an auditor's hands. The proof's text is the tlog-witness
add-checkpoint form (`gateway.tlog.consistency`); the auditor verifies it offline
against the checkpoint of size N they kept (`gateway audit verify --consistency`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from gateway.audit.stored_checkpoints import StoredCheckpoint, read_checkpoint
from gateway.audit.tree_store import TreeStore
from gateway.errors import BadRequest
from gateway.tlog.consistency import format_consistency_proof
from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.verify_proof import verify_consistency


@dataclass(frozen=True)
class ConsistencyResult:
    old: StoredCheckpoint
    new: StoredCheckpoint
    proof: list[bytes]
    text: str


def check_range(from_size: int, to_size: int) -> None:
    """Raises BadRequest unless 0 < from_size <= to_size (a proof from the empty tree
    proves nothing, docs/audit.md)."""
    if from_size < 1:
        raise BadRequest(
            f"from must be the size of a checkpoint, at least 1 (got {from_size}): every "
            "log extends the empty tree, so a proof from size 0 proves nothing"
        )
    if to_size < from_size:
        raise BadRequest(
            f"from ({from_size}) is larger than to ({to_size}): a consistency proof goes "
            "from an older (smaller) checkpoint to a newer one"
        )


def consistency_between(engine: Engine, from_size: int, to_size: int) -> ConsistencyResult:
    """The proof that the stored checkpoint of ``to_size`` extends the one of
    ``from_size``. Raises BadRequest for a bad range, ProofUnavailable when either is
    not a stored checkpoint, ProofError if the stored tree disagrees with them."""
    check_range(from_size, to_size)
    old = read_checkpoint(engine, from_size)
    new = read_checkpoint(engine, to_size)
    missing = [size for size, stored in ((from_size, old), (to_size, new)) if stored is None]
    if missing or old is None or new is None:
        raise ProofUnavailable(
            f"no checkpoint of tree size {missing[0]}: a proof is between two signed "
            "checkpoints (GET /v1/audit/checkpoint?size=N, or the checkpoint directory)"
        )
    proof = TreeStore(engine).consistency_proof(from_size, to_size)
    verify_consistency(from_size, to_size, proof, old.root, new.root)
    return ConsistencyResult(old, new, proof, format_consistency_proof(from_size, proof, new.note))
