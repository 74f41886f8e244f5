"""The Merkle tree of the audit log (RFC 6962 §2.1, RFC 9162 §2.1): hashing and shape.

The hash half of "hash, prove, verify": pure functions over leaf hashes. The leaf hash
itself is part of the leaf format and lives in `gateway.tlog.leaf`; it is re-exported
here so that tree code has one import.

Terms as in RFC 9162: the tree over ``tree_size`` leaves ``D[0:tree_size]``; MTH, the
Merkle Tree Hash (the root); ``k``, the split point, the largest power of two smaller
than ``n``. A *node* ``(level, index)`` is the root of the complete subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 are the leaf hashes. Complete
subtrees never change once their leaves exist, which is what lets the tree store keep
them and proofs reuse them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from gateway.tlog.leaf import HASH_SIZE, leaf_hash

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeId",
    "fold_right",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root",
    "split_point",
]

# MTH({}) = SHA-256() (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
# RFC 6962 interior node prefix; leaves use 0x00 (leaf.LEAF_HASH_PREFIX).
NODE_HASH_PREFIX = b"\x01"

_sha256 = hashlib.sha256


class NodeId(NamedTuple):
    """The complete subtree over leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return _sha256(NODE_HASH_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """k: the largest power of two smaller than ``n``. Requires n >= 2."""
    if n < 2:
        raise ValueError(f"a split point needs at least 2 leaves, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The complete subtrees that exactly cover leaves ``[begin, end)``, left to right,
    each as large as alignment allows (the "compact range"). Requires 0 <= begin <= end.

    For ``begin = 0`` these are the subtrees of the set bits of ``end``, largest
    first; the MTH of the range is their `fold_right`."""
    if not 0 <= begin <= end:
        raise ValueError(f"bad leaf range [{begin}, {end})")
    left: list[NodeId] = []
    right: list[NodeId] = []
    level = 0
    # Climb from the leaves: at each level, peel off an unaligned node on either side.
    while begin < end:
        if begin & 1:
            left.append(NodeId(level, begin))
            begin += 1
        if end & 1 and begin < end:
            end -= 1
            right.append(NodeId(level, end))
        begin >>= 1
        end >>= 1
        level += 1
    right.reverse()
    return left + right


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """The MTH of a range from the hashes of its compact range (`range_nodes`), left
    to right: each subtree is the right child of its left neighbour's parent, so
    hash from the right end. Requires at least one hash."""
    if not hashes:
        raise ValueError("no hashes to fold")
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _sha256(NODE_HASH_PREFIX + left + result).digest()
    return result


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH(D[n]) of the given leaf hashes (not leaves): EMPTY_ROOT for none."""
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


class CompactRange:
    """The right edge of a growing tree: the hashes of `range_nodes(0, size)`.

    Appending a leaf hash merges equal-sized subtrees like a binary counter carry,
    producing each complete node exactly once, when its last leaf arrives. That gives
    the root of any prefix in one pass (verification) and the nodes the tree store
    keeps (``append`` returns them). O(log n) memory.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """The range ``[0, size)`` from the hashes of `range_nodes(0, size)`."""
        if size < 0:
            raise ValueError("size must be non-negative")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} compact range nodes, "
                f"got {len(hashes)}"
            )
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Adds the next leaf hash; returns the complete nodes above level 0 that it
        completes, lowest first."""
        completed: list[tuple[NodeId, bytes]] = []
        hashes = self._hashes
        size = self._size
        current = leaf_hash
        level = 0
        # Each trailing 1-bit of size is a subtree of the same height to merge with.
        while (size >> level) & 1:
            current = _sha256(NODE_HASH_PREFIX + hashes.pop() + current).digest()
            level += 1
            completed.append((NodeId(level, size >> level), current))
        hashes.append(current)
        self._size = size + 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Appends every leaf hash, discarding the completed nodes (root only)."""
        hashes = self._hashes
        size = self._size
        for current in leaf_hashes:
            carry = size
            while carry & 1:
                current = _sha256(NODE_HASH_PREFIX + hashes.pop() + current).digest()
                carry >>= 1
            hashes.append(current)
            size += 1
        self._size = size

    def root(self) -> bytes:
        """MTH(D[0:size])."""
        return fold_right(self._hashes) if self._hashes else EMPTY_ROOT
