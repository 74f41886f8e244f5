"""Receipts of stored entries: an entry's inclusion proof against a stored checkpoint,
in the C2SP tlog-proof format (`gateway.tlog.receipt`, which also parses and verifies
them, offline)."""

from __future__ import annotations

from sqlalchemy import Engine

from gateway.audit.stored_checkpoints import latest_checkpoint, read_checkpoint
from gateway.audit.tree_store import TreeStore
from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.merkle import NodeId
from gateway.tlog.receipt import format_receipt
from gateway.tlog.verify_proof import verify_inclusion


def receipt_for_entry(engine: Engine, seq: int, *, tree_size: int | None = None) -> str:
    """The receipt of entry ``seq`` against the stored checkpoint of ``tree_size``
    (default: the latest). Raises ProofUnavailable when no such checkpoint exists or
    it does not cover the entry yet, ProofError if the stored tree does not match the
    checkpoint's root."""
    stored = latest_checkpoint(engine) if tree_size is None else read_checkpoint(engine, tree_size)
    if stored is None:
        raise ProofUnavailable(
            "no checkpoint yet" if tree_size is None else f"no checkpoint of size {tree_size}"
        )
    if not 0 <= seq < stored.size:
        raise ProofUnavailable(
            f"entry {seq} is not covered by the checkpoint of size {stored.size}; "
            "wait for the next checkpoint"
        )
    store = TreeStore(engine)
    proof = store.inclusion_proof(seq, stored.size)
    # Checked before it leaves: a damaged tree store must fail here, loudly, rather
    # than in an auditor's hands.
    leaf = store.node_hashes([NodeId(0, seq)])[NodeId(0, seq)]
    verify_inclusion(leaf, seq, stored.size, proof, stored.root)
    return format_receipt(seq, proof, stored.note)
