"""The Merkle tree against the shared transparency-dev vectors and a naive reference.

Every file in tests/vectors/merkle/ (a copy of the team's shared vectors, so that a
clean clone carries them) runs: happy cases must verify, ``wantErr``
cases must raise ProofError. Proof generation is cross-checked against a direct
transcription of RFC 9162's recursive definitions (MTH, PATH, SUBPROOF).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.tlog.errors import ProofError, ProofUnavailable, RootMismatchError
from gateway.tlog.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    leaf_hash,
    node_hash,
    range_nodes,
    root,
    split_point,
)
from gateway.tlog.proof import MemoryTree, consistency_proof, inclusion_proof
from gateway.tlog.verify_proof import verify_consistency, verify_inclusion

# tests/unit/audit/<this file> -> tests/vectors/merkle.
VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "merkle"
VECTOR_FILES = sorted(VECTORS.rglob("*.json")) if VECTORS.is_dir() else []


def test_the_vectors_are_there() -> None:
    assert VECTORS.is_dir(), f"the Merkle test vectors are missing: expected {VECTORS}"
    kinds = {path.relative_to(VECTORS).parts[0] for path in VECTOR_FILES}
    assert kinds == {"inclusion", "consistency"}
    assert len(VECTOR_FILES) >= 190  # 196 when this test was written


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _check(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]
    if "leafIdx" in case:
        verify_inclusion(
            _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"])
        )
    else:
        verify_consistency(
            case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
        )


@pytest.mark.parametrize(
    "path", VECTOR_FILES, ids=[str(p.relative_to(VECTORS)) for p in VECTOR_FILES]
)
def test_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _check(case)
    else:
        _check(case)


# --- a naive reference tree ----------------------------------------------------------


def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = split_point(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = split_point(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = split_point(n)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


LEAVES = [leaf_hash(f"leaf {i}".encode()) for i in range(64)]


@pytest.mark.parametrize("size", range(1, 65))
def test_proofs_match_the_reference_for_every_index(size: int) -> None:
    leaves = LEAVES[:size]
    tree = MemoryTree(leaves)
    expected_root = mth(leaves)
    assert tree.root() == expected_root == root(leaves)
    for index in range(size):
        proof = inclusion_proof(tree, index, size)
        assert proof == path(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, expected_root)
    for size1 in range(1, size + 1):
        proof = consistency_proof(tree, size1, size)
        assert proof == subproof(size1, leaves, True)
        verify_consistency(size1, size, proof, mth(leaves[:size1]), expected_root)
        assert tree.root(size1) == mth(leaves[:size1])


def test_proofs_match_the_reference_at_random_larger_sizes() -> None:
    rng = random.Random(9162)
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(3000)]
    tree = MemoryTree(leaves)
    for _ in range(40):
        size = rng.randrange(65, len(leaves) + 1)
        index = rng.randrange(size)
        size1 = rng.randrange(1, size + 1)
        assert inclusion_proof(tree, index, size) == path(index, leaves[:size])
        assert consistency_proof(tree, size1, size) == subproof(size1, leaves[:size], True)


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest() == CompactRange().root()


def test_range_nodes_cover_exactly_the_range() -> None:
    for begin in range(0, 40):
        for end in range(begin, 70):
            nodes = range_nodes(begin, end)
            covered = [leaf for node in nodes for leaf in range(node.begin, node.end)]
            assert covered == list(range(begin, end))
    assert range_nodes(0, 13) == [NodeId(3, 0), NodeId(2, 2), NodeId(0, 12)]


def test_compact_range_reports_each_completed_node_once() -> None:
    compact = CompactRange()
    completed = [node for leaf in LEAVES[:8] for node, _ in compact.append(leaf)]
    assert completed == [
        NodeId(1, 0),
        NodeId(1, 1),
        NodeId(2, 0),
        NodeId(1, 2),
        NodeId(1, 3),
        NodeId(2, 1),
        NodeId(3, 0),
    ]
    restored = CompactRange(compact.size, compact.hashes)
    restored.extend(LEAVES[8:13])
    assert restored.root() == mth(LEAVES[:13])


# --- what our own proofs reject ------------------------------------------------------


def test_every_single_bit_flip_is_rejected() -> None:
    leaves = LEAVES[:21]
    tree = MemoryTree(leaves)
    proof = inclusion_proof(tree, 13, 21)
    for position in range(len(proof)):
        for bit in (0, 7, 255):
            forged = list(proof)
            value = bytearray(forged[position])
            value[bit // 8] ^= 1 << (bit % 8)
            forged[position] = bytes(value)
            with pytest.raises(RootMismatchError) as caught:
                verify_inclusion(leaves[13], 13, 21, forged, tree.root())
            assert caught.value.expected == tree.root()
            assert caught.value.calculated != tree.root()


@pytest.mark.parametrize(
    ("index", "size", "proof_len", "message"),
    [
        (5, 5, 3, "beyond the tree"),
        (-1, 5, 3, "non-negative"),
        (1, 5, 2, "has 2 hashes, want 3"),
        (1, 5, 4, "has 4 hashes, want 3"),
    ],
)
def test_inclusion_preconditions_have_their_own_messages(
    index: int, size: int, proof_len: int, message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(LEAVES[0], index, size, [LEAVES[1]] * proof_len, mth(LEAVES[:size]))


def test_hash_sizes_are_checked() -> None:
    tree = MemoryTree(LEAVES[:5])
    proof = inclusion_proof(tree, 1, 5)
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(LEAVES[1][:31], 1, 5, proof, tree.root())
    with pytest.raises(ProofError, match="proof hash 1 is 33 bytes"):
        verify_inclusion(LEAVES[1], 1, 5, [proof[0], proof[1] + b"x", proof[2]], tree.root())


def test_consistency_mismatch_names_the_root() -> None:
    tree = MemoryTree(LEAVES[:10])
    proof = consistency_proof(tree, 6, 10)
    with pytest.raises(RootMismatchError, match="root1 mismatch"):
        verify_consistency(6, 10, proof, LEAVES[0], tree.root())
    with pytest.raises(RootMismatchError, match="root2 mismatch"):
        verify_consistency(6, 10, proof, tree.root(6), LEAVES[0])
    with pytest.raises(ProofError, match="proves nothing"):
        verify_consistency(0, 10, [], EMPTY_ROOT, tree.root())


def test_generation_preconditions() -> None:
    tree = MemoryTree(LEAVES[:4])
    with pytest.raises(ValueError, match="0 <= index < tree_size"):
        inclusion_proof(tree, 4, 4)
    with pytest.raises(ValueError, match="0 < size1 <= size2"):
        consistency_proof(tree, 0, 4)
    with pytest.raises(ProofUnavailable):
        inclusion_proof(tree, 1, 9)  # the tree has only 4 leaves
