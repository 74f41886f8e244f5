"""Hash-chain verification: the part of the offline verifier that needs no checkpoint.

`verify_chain` (entries as read back) and `verify_chain_rows` (raw stored bytes, the
fast path for whole logs) return nothing and raise `ChainError` at the first fault,
so a caller cannot mistake a failed verification for a passed one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.canonical import parse_json
from gateway.tlog.entries import AuditEntry, ChainRow
from gateway.tlog.errors import ChainError, LeafFormatError
from gateway.tlog.leaf import ZERO_HASH, canonical_json, commitment_of_jcs, leaf_hash, parse_leaf

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
    verify_chain_rows(_rows(entries, first_seq), origin, first_seq=first_seq, prev=prev)


def verify_chain_rows(
    rows: Iterable[ChainRow],
    origin: str,
    *,
    first_seq: int = 0,
    prev: bytes = ZERO_HASH,
) -> None:
    """`verify_chain` over stored bytes (`gateway.audit.reader.iter_chain_rows`): the
    payload commitment is checked against the stored canonical payload bytes, so no
    payload is parsed or re-serialized (only erasure payloads are read)."""
    expected_seq = first_seq
    expected_prev = prev
    erased_without_record: set[int] = set()
    # Unpacked rather than read by attribute: this loop is the verifier's hot path
    # (docs/audit.md: whole logs at ~200,000 entries/s).
    for row_seq, ts, kind, ref, leaf_bytes, stored_hash, salt, payload_jcs in rows:
        seq = expected_seq
        try:
            leaf = parse_leaf(leaf_bytes)
        except LeafFormatError as exc:
            raise ChainError(seq, exc.message) from None
        if leaf.log != origin:
            raise ChainError(seq, f"leaf belongs to log {leaf.log!r}, expected {origin!r}")
        if leaf.seq != seq or row_seq != seq:
            raise ChainError(
                seq,
                f"expected seq {seq} here, found leaf seq {leaf.seq} (stored as "
                f"{row_seq}): an entry is missing, duplicated or out of order",
            )
        if leaf.prev != expected_prev:
            raise ChainError(seq, "prev does not match the previous entry's leaf hash")
        computed = leaf_hash(leaf_bytes)
        if stored_hash != computed:
            raise ChainError(seq, "stored leaf_hash does not match the leaf bytes")
        if ts != leaf.ts or kind != leaf.kind or ref != leaf.ref:
            raise ChainError(seq, "stored ts/kind/ref columns differ from the leaf")
        if payload_jcs is None:
            erased_without_record.add(seq)
        else:
            if salt is None:
                raise ChainError(seq, "payload is present but its salt is missing")
            try:
                commitment = commitment_of_jcs(salt, payload_jcs)
            except ValueError as exc:
                raise ChainError(seq, f"payload cannot be checked: {exc}") from None
            if commitment != leaf.commitment:
                raise ChainError(seq, "payload does not match the leaf's commitment")
            if leaf.kind == ERASURE_KIND:
                erased_without_record.discard(_erased_seq(seq, payload_jcs))
        expected_seq += 1
        expected_prev = computed
    if erased_without_record:
        first = min(erased_without_record)
        raise ChainError(first, "payload is missing and no erasure entry records its removal")


def _rows(entries: Iterable[AuditEntry], first_seq: int) -> Iterator[ChainRow]:
    # The commitment is over the canonical bytes of the payload as given: an entry
    # whose payload object was altered no longer matches.
    for position, entry in enumerate(entries, first_seq):
        # Stored bytes that are not a JSON object are checked as they are (their
        # commitment tells whether they are what was appended).
        payload_jcs = entry.payload_jcs
        if entry.payload is not None:
            try:
                payload_jcs = canonical_json(entry.payload)
            except ValueError as exc:
                raise ChainError(position, f"payload cannot be checked: {exc}") from None
        yield ChainRow(
            entry.seq,
            entry.ts,
            entry.kind,
            entry.ref,
            entry.leaf,
            entry.leaf_hash,
            entry.salt,
            payload_jcs,
        )


def _erased_seq(seq: int, payload_jcs: bytes) -> int:
    # An erasure payload is {"seq": N, "reason": ...} (gateway.audit.erasure); only
    # "seq" matters here, other keys are ignored. Parsed only here: erasures are rare.
    try:
        erased = parse_json(payload_jcs).get("seq")
    except (ValueError, AttributeError, RecursionError):
        erased = None
    if type(erased) is not int or not 0 <= erased < seq:
        raise ChainError(seq, "erasure entry must name an earlier entry as payload 'seq'")
    return erased
