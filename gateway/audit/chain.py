"""Hash-chain verification: the part of the offline verifier that needs no checkpoint.

`verify_chain` returns nothing and raises `ChainError` at the first fault, so a caller
cannot mistake a failed verification for a passed one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.audit.errors import ChainError, LeafFormatError
from gateway.audit.leaf import ZERO_HASH, canonical_json, commitment_of_jcs, leaf_hash, parse_leaf
from gateway.audit.records import AuditEntry

ERASURE_KIND = "erasure"


def verify_chain(
    entries: Iterable[AuditEntry],
    origin: str,
    *,
    first_seq: int = 0,
    prev: bytes = ZERO_HASH,
) -> None:
    """Checks that ``entries`` are a contiguous, unaltered run of the chain of log
    ``origin``, starting at ``first_seq`` whose predecessor's leaf hash is ``prev``
    (the defaults: the whole log from entry 0).

    Checks, for each entry in order: the leaf is canonical v1 JSON of this origin; its
    seq is the next one (no gap, no reorder, no duplicate); ``prev`` is the previous
    leaf's hash; the stored leaf hash and the indexed columns agree with the leaf
    bytes; the payload matches the leaf's commitment, or, when erased, a later
    ``erasure`` entry of the same run names it.

    Cannot detect a truncated tail or a rewritten suffix with recomputed hashes on its
    own: that needs a checkpoint held outside the database.
    """
    expected_seq = first_seq
    expected_prev = prev
    erased_without_record: set[int] = set()
    for entry in entries:
        seq = expected_seq
        try:
            leaf = parse_leaf(entry.leaf)
        except LeafFormatError as exc:
            raise ChainError(seq, exc.message) from None
        if leaf.log != origin:
            raise ChainError(seq, f"leaf belongs to log {leaf.log!r}, expected {origin!r}")
        if leaf.seq != seq or entry.seq != seq:
            raise ChainError(
                seq,
                f"expected seq {seq} here, found leaf seq {leaf.seq} (stored as "
                f"{entry.seq}): an entry is missing, duplicated or out of order",
            )
        if leaf.prev != expected_prev:
            raise ChainError(seq, "prev does not match the previous entry's leaf hash")
        if entry.leaf_hash != leaf_hash(entry.leaf):
            raise ChainError(seq, "stored leaf_hash does not match the leaf bytes")
        if (entry.ts, entry.kind, entry.ref) != (leaf.ts, leaf.kind, leaf.ref):
            raise ChainError(seq, "stored ts/kind/ref columns differ from the leaf")
        if entry.payload is None:
            erased_without_record.add(seq)
        else:
            _check_payload(seq, entry, leaf.commitment)
            if leaf.kind == ERASURE_KIND:
                erased_without_record.discard(_erased_seq(seq, entry.payload))
        expected_seq += 1
        expected_prev = leaf_hash(entry.leaf)
    if erased_without_record:
        first = min(erased_without_record)
        raise ChainError(first, "payload is missing and no erasure entry records its removal")


def _check_payload(seq: int, entry: AuditEntry, commitment: bytes) -> None:
    if entry.salt is None:
        raise ChainError(seq, "payload is present but its salt is missing")
    try:
        computed = commitment_of_jcs(entry.salt, canonical_json(entry.payload))
    except ValueError as exc:
        raise ChainError(seq, f"payload cannot be checked: {exc}") from None
    if computed != commitment:
        raise ChainError(seq, "payload does not match the leaf's commitment")


def _erased_seq(seq: int, payload: dict[str, Any]) -> int:
    # Provisional shape of an erasure payload ({"seq": N, ...}); the erasure issue
    # fixes the final one.
    erased = payload.get("seq")
    if type(erased) is not int or not 0 <= erased < seq:
        raise ChainError(seq, "erasure entry must name an earlier entry as payload 'seq'")
    return erased
