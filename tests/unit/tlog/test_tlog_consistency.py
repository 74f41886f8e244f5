"""Consistency proofs between checkpoints, in the tlog-witness add-checkpoint form:
the grammar, and verification against a trusted checkpoint (forks and mismatches)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.audit.keys import SigningKey
from gateway.tlog.checkpoint import Checkpoint, sign_checkpoint
from gateway.tlog.consistency import (
    ConsistencyFormatError,
    format_consistency_proof,
    parse_consistency_proof,
    verify_consistency_proof,
)
from gateway.tlog.errors import NoteSignatureError, ProofError, RootMismatchError
from gateway.tlog.keys import AuditKey
from gateway.tlog.leaf import leaf_hash
from gateway.tlog.proof import MemoryTree, consistency_proof

ORIGIN = "example.com/audit-log"
KEY = SigningKey.generate(ORIGIN)
KEYS = [AuditKey(KEY.verifier, 0, None)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tree(n: int, tag: bytes = b"") -> MemoryTree:
    return MemoryTree(leaf_hash(tag + str(i).encode()) for i in range(n))


def signed(memory: MemoryTree, size: int) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, memory.root(size)), [KEY])


def proof_text(memory: MemoryTree, old: int, new: int) -> str:
    return format_consistency_proof(old, consistency_proof(memory, old, new), signed(memory, new))


@pytest.mark.parametrize(("old", "new"), [(1, 1), (1, 2), (3, 7), (4, 8), (6, 13), (13, 13)])
def test_proof_round_trips_and_verifies(old: int, new: int) -> None:
    memory = tree(new)
    text = proof_text(memory, old, new)
    parsed = parse_consistency_proof(text)
    assert parsed.text() == text and parsed.old_size == old
    assert text.startswith(f"old {old}\n")
    trusted, latest = verify_consistency_proof(text, signed(memory, old), keys=KEYS, origin=ORIGIN)
    assert (trusted.size, latest.size) == (old, new)


def test_fork_is_detected_against_the_trusted_checkpoint() -> None:
    honest, forked = tree(10), tree(10, b"fork")
    # The forked log shares no history with the auditor's checkpoint of the honest one.
    text = proof_text(forked, 4, 10)
    with pytest.raises(RootMismatchError):
        verify_consistency_proof(text, signed(honest, 4), keys=KEYS, origin=ORIGIN)


def test_proof_must_start_at_the_trusted_size() -> None:
    memory = tree(10)
    with pytest.raises(ProofError, match="starts at tree size 4"):
        verify_consistency_proof(
            proof_text(memory, 4, 10), signed(memory, 5), keys=KEYS, origin=ORIGIN
        )


def test_checkpoint_signed_by_another_key_is_refused() -> None:
    memory = tree(8)
    other = SigningKey.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 8, memory.root(8)), [other])
    text = format_consistency_proof(4, consistency_proof(memory, 4, 8), note)
    with pytest.raises(NoteSignatureError):
        verify_consistency_proof(text, signed(memory, 4), keys=KEYS, origin=ORIGIN)


def test_tampered_proof_hash_fails() -> None:
    memory = tree(9)
    text = proof_text(memory, 3, 9)
    lines = text.split("\n")
    lines[1] = b64(hashlib.sha256(b"x").digest())
    with pytest.raises(RootMismatchError):
        verify_consistency_proof("\n".join(lines), signed(memory, 3), keys=KEYS, origin=ORIGIN)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "old 01\n\nx",
        "old -1\n\n",
        "old 3\nnot base64!\n\n",
        "old 3\nAAAA\n\n",
        "olds 3\n\n",
        "old 3\n",
    ],
)
def test_malformed_bodies_are_refused(body: str) -> None:
    with pytest.raises(ConsistencyFormatError):
        parse_consistency_proof(body)


def test_too_many_proof_lines_are_refused() -> None:
    memory = tree(2)
    line = b64(bytes(32))
    body = "old 1\n" + (line + "\n") * 64 + "\n" + signed(memory, 2)
    with pytest.raises(ConsistencyFormatError, match="at most 63"):
        parse_consistency_proof(body)
