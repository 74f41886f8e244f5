"""Verifying inclusion and consistency proofs (RFC 9162 §2.1.3.2 and §2.1.4.2).

The verify half of "hash, prove, verify". Functions return nothing and raise: a
`ProofError` naming the precondition that failed, or a `RootMismatchError` carrying
the expected and calculated roots. Preconditions (sizes, hash lengths, the exact
number of proof hashes) are checked before any hashing, so every malformed input has
its own message; the bit-shifting algorithms then run as the RFC writes them.

Deliberate choices, pinned by the transparency-dev vectors (`tests/vectors/merkle/`):

- A consistency proof from size 0 is rejected: every tree extends the empty tree,
  so such a "proof" proves nothing and accepting it would hide a caller's mistake.
- When size1 == size2 the proof must be empty and the roots are compared as given
  (no length check: there is nothing to hash).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.tlog.errors import ProofError, RootMismatchError
from gateway.tlog.merkle import HASH_SIZE, node_hash


def inclusion_proof_size(index: int, tree_size: int) -> int:
    """How many hashes the inclusion proof of ``index`` in ``tree_size`` has.
    Requires 0 <= index < tree_size."""
    # ``inner`` levels where the path and the tree's right edge still differ, then
    # one hash per left sibling on the right border.
    inner = (index ^ (tree_size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from ``leaf_hash`` at ``index``. Requires
    0 <= index < tree_size, a 32-byte leaf hash and exactly the expected number of
    32-byte proof hashes; raises ProofError otherwise."""
    if index < 0 or tree_size < 0:
        raise ProofError(f"index ({index}) and tree_size ({tree_size}) must be non-negative")
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is beyond the tree: requires index < {tree_size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
    _check_hashes(proof)
    want = inclusion_proof_size(index, tree_size)
    if len(proof) != want:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, want {want} for leaf {index} "
            f"in a tree of size {tree_size}"
        )
    # RFC 9162 §2.1.3.2, steps 2-5.
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Checks that the leaf with ``leaf_hash`` is at ``index`` in the tree of
    ``tree_size`` whose root is ``root``. Raises ProofError or RootMismatchError."""
    calculated = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Checks that the tree of ``size2`` with ``root2`` extends the tree of ``size1``
    with ``root1``. Requires 0 < size1 <= size2. Raises ProofError or
    RootMismatchError (``expected`` is the given root, ``calculated`` the proof's)."""
    if size1 < 0 or size2 < 0:
        raise ProofError(f"sizes must be non-negative, got {size1} and {size2}")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0:
        raise ProofError("consistency with the empty tree (size1 = 0) proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError(f"size1 = size2 = {size1}, but the proof is not empty")
        if root1 != root2:
            raise RootMismatchError(root1, root2, "root2 of an equal-size tree")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")
    _check_hashes(proof)
    # Hashes in the proof: the seed (the subtree of size1 ending at its last leaf),
    # unless size1 is a power of two and the seed is root1 itself, then the
    # inclusion path of that subtree in the tree of size2.
    shift = (size1 & -size1).bit_length() - 1
    seed_given = size1 != 1 << shift
    want = int(seed_given) + inclusion_proof_size(size1 - 1, size2) - shift
    if len(proof) != want:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, want {want} from size {size1} to {size2}"
        )
    # RFC 9162 §2.1.4.2, steps 2-7.
    path = list(proof) if seed_given else [root1, *proof]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise RootMismatchError(root1, fr, "root1")
    if sr != root2:
        raise RootMismatchError(root2, sr, "root2")


def _check_hashes(proof: Sequence[bytes]) -> None:
    for position, value in enumerate(proof):
        if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
            size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
            raise ProofError(f"proof hash {position} is {size} bytes, want {HASH_SIZE}")
