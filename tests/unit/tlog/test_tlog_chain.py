"""verify_chain: accepts an honest chain and names the first fault of a tampered one."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway.tlog.chain import verify_chain
from gateway.tlog.entries import AuditEntry
from gateway.tlog.errors import ChainError
from gateway.tlog.leaf import (
    ZERO_HASH,
    b64,
    build_leaf,
    canonical_json,
    leaf_hash,
    payload_commitment,
)

ORIGIN = "test.example/audit"


def make_chain(
    n: int, origin: str = ORIGIN, *, first_seq: int = 0, prev: bytes = ZERO_HASH
) -> list[AuditEntry]:
    entries = []
    for seq in range(first_seq, first_seq + n):
        payload = {"n": seq, "tool": "t__x"}
        salt = bytes([seq % 256]) * 32
        ts = f"2026-11-21T10:00:{seq % 60:02d}.000Z"
        leaf = build_leaf(
            origin=origin,
            seq=seq,
            prev=prev,
            ts=ts,
            kind="call.attempt",
            ref=f"req-{seq}",
            commitment=payload_commitment(salt, payload),
        )
        entries.append(
            AuditEntry(
                seq=seq,
                ts=ts,
                kind="call.attempt",
                ref=f"req-{seq}",
                leaf=leaf,
                leaf_hash=leaf_hash(leaf),
                payload=payload,
                salt=salt,
            )
        )
        prev = leaf_hash(leaf)
    return entries


def rewrite_leaf(entry: AuditEntry, **fields: object) -> AuditEntry:
    """An entry whose leaf was edited and re-canonicalized, with its own hash fixed up:
    what a careful forger would store."""
    obj = json.loads(entry.leaf)
    obj.update(fields)
    leaf = canonical_json(obj)
    return dataclasses.replace(entry, leaf=leaf, leaf_hash=leaf_hash(leaf))


def check_fails_at(entries: list[AuditEntry], seq: int, message: str, **kwargs: object) -> None:
    with pytest.raises(ChainError, match=message) as caught:
        verify_chain(entries, ORIGIN, **kwargs)  # type: ignore[arg-type]
    assert caught.value.seq == seq
    assert caught.value.details == {"seq": seq}


def test_honest_chain_verifies() -> None:
    verify_chain(make_chain(10), ORIGIN)


def test_empty_chain_verifies() -> None:
    verify_chain([], ORIGIN)


def test_suffix_verifies_from_a_known_predecessor() -> None:
    chain = make_chain(10)
    verify_chain(chain[4:], ORIGIN, first_seq=4, prev=chain[3].leaf_hash)
    check_fails_at(chain[4:], 4, "prev does not match", first_seq=4, prev=ZERO_HASH)


def test_edited_leaf_breaks_the_next_link() -> None:
    chain = make_chain(6)
    chain[2] = rewrite_leaf(chain[2], kind="call.outcome")
    chain[2] = dataclasses.replace(chain[2], kind="call.outcome")
    check_fails_at(chain, 3, "prev does not match")


def test_edited_leaf_without_fixing_its_hash_fails_at_itself() -> None:
    chain = make_chain(6)
    edited = rewrite_leaf(chain[2], ref="req-forged")
    chain[2] = dataclasses.replace(edited, ref="req-forged", leaf_hash=chain[2].leaf_hash)
    check_fails_at(chain, 2, "stored leaf_hash does not match")


def test_edited_indexed_column_is_detected() -> None:
    chain = make_chain(4)
    chain[1] = dataclasses.replace(chain[1], kind="call.decision")
    check_fails_at(chain, 1, "columns differ from the leaf")


def test_non_canonical_leaf_bytes_are_rejected() -> None:
    chain = make_chain(4)
    spaced = chain[1].leaf.replace(b",", b", ")
    chain[1] = dataclasses.replace(chain[1], leaf=spaced, leaf_hash=leaf_hash(spaced))
    check_fails_at(chain, 1, "canonical form")


def test_edited_payload_is_detected() -> None:
    chain = make_chain(5)
    chain[3] = dataclasses.replace(chain[3], payload={"n": 3, "tool": "t__other"})
    check_fails_at(chain, 3, "payload does not match the leaf's commitment")


def test_swapped_salt_is_detected() -> None:
    chain = make_chain(5)
    chain[3] = dataclasses.replace(chain[3], salt=bytes(32))
    check_fails_at(chain, 3, "payload does not match")


def test_payload_without_salt_is_detected() -> None:
    chain = make_chain(3)
    chain[1] = dataclasses.replace(chain[1], salt=None)
    check_fails_at(chain, 1, "salt is missing")


def test_deleted_middle_entry_is_detected() -> None:
    chain = make_chain(6)
    del chain[3]
    check_fails_at(chain, 3, "missing, duplicated or out of order")


def test_deleted_first_entry_is_detected() -> None:
    check_fails_at(make_chain(3)[1:], 0, "out of order")


def test_reordered_entries_are_detected() -> None:
    chain = make_chain(6)
    chain[2], chain[3] = chain[3], chain[2]
    check_fails_at(chain, 2, "out of order")


def test_duplicated_entry_is_detected() -> None:
    chain = make_chain(4)
    chain.insert(2, chain[1])
    check_fails_at(chain, 2, "out of order")


def test_renumbered_insert_is_detected() -> None:
    # A forged entry slipped in at 2, with later seqs shifted and their own hashes
    # fixed: the entry after it still points at the old predecessor.
    chain = make_chain(5)
    forged = rewrite_leaf(chain[2], ref="forged", prev=b64(chain[1].leaf_hash))
    later = [rewrite_leaf(e, seq=e.seq + 1) for e in chain[2:]]
    later = [dataclasses.replace(e, seq=e.seq + 1) for e in later]
    tampered = [*chain[:2], dataclasses.replace(forged, ref="forged"), *later]
    check_fails_at(tampered, 3, "prev does not match")


def test_leaf_of_another_log_is_rejected() -> None:
    check_fails_at(make_chain(2, origin="other/log"), 0, "belongs to log 'other/log'")


def test_stored_seq_must_match_leaf_seq() -> None:
    chain = make_chain(3)
    chain[1] = dataclasses.replace(chain[1], seq=7)
    check_fails_at(chain, 1, "stored as 7")


def test_erased_payload_needs_an_erasure_entry() -> None:
    chain = make_chain(4)
    chain[1] = dataclasses.replace(chain[1], payload=None, salt=None)
    check_fails_at(chain, 1, "no erasure entry")


def test_erased_payload_with_erasure_entry_verifies() -> None:
    chain = make_chain(4)
    chain[1] = dataclasses.replace(chain[1], payload=None, salt=None)
    salt = b"\x07" * 32
    payload = {"seq": 1, "reason": "data subject request"}
    leaf = build_leaf(
        origin=ORIGIN,
        seq=4,
        prev=chain[3].leaf_hash,
        ts="2026-11-21T11:00:00.000Z",
        kind="erasure",
        ref="erasure-1",
        commitment=payload_commitment(salt, payload),
    )
    erasure = AuditEntry(
        seq=4,
        ts="2026-11-21T11:00:00.000Z",
        kind="erasure",
        ref="erasure-1",
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
        payload=payload,
        salt=salt,
    )
    verify_chain([*chain, erasure], ORIGIN)


def test_chain_error_message_names_the_entry() -> None:
    error = ChainError(12, "prev does not match")
    assert str(error) == "audit entry 12: prev does not match"
    assert error.code == "audit_chain_invalid"
