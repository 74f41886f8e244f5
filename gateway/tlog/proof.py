"""Building inclusion and consistency proofs (RFC 9162 §2.1.3.1 PATH, §2.1.4.1 PROOF).

The prove half of "hash, prove, verify". A proof is a list of subtree hashes; which
subtrees is pure arithmetic on (index, tree_size) or (size1, size2), done here
without any hashing. Their hashes come from a `NodeSource` — the database tree store
(`gateway.audit.tree_store`) or the in-memory `MemoryTree` — in one batched lookup,
so a proof costs O(log n) stored hashes, not O(n) recomputation.

A proof element is the MTH of a leaf range. Ranges left of the path are always
complete subtrees (one stored node); a range on the right edge of a tree whose size
is not a power of two is not, and is folded from its compact range (`range_nodes`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.merkle import CompactRange, NodeId, fold_right, range_nodes, split_point

Range = tuple[int, int]  # leaves [begin, end)


class NodeSource(Protocol):
    """Where complete subtree hashes come from."""

    def node_hashes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        """The hashes of ``ids``; raises ProofUnavailable if any is not (yet) known."""
        ...


def inclusion_path(index: int, tree_size: int) -> list[Range]:
    """The leaf ranges whose MTHs form PATH(index, D[tree_size]), in proof order (the
    leaf's sibling first). Requires 0 <= index < tree_size."""
    if not 0 <= index < tree_size:
        raise ValueError(f"inclusion proof needs 0 <= index < tree_size, got {index}, {tree_size}")
    ranges: list[Range] = []
    begin, end, m = 0, tree_size, index
    # RFC 9162 recurses from the root down and appends the sibling after the
    # recursion's result: walk down collecting siblings, then reverse.
    while end - begin > 1:
        k = split_point(end - begin)
        if m < k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
            m -= k
    ranges.reverse()
    return ranges


def consistency_path(size1: int, size2: int) -> list[Range]:
    """The leaf ranges whose MTHs form PROOF(size1, D[size2]) = SUBPROOF(size1,
    D[size2], true), in proof order. Empty when size1 == size2. Requires
    0 < size1 <= size2 (a proof from the empty tree proves nothing; the verifier
    rejects it)."""
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proof needs 0 < size1 <= size2, got {size1}, {size2}")
    ranges: list[Range] = []
    begin, end, m, whole = 0, size2, size1, True
    while True:
        n = end - begin
        if m == n:
            # SUBPROOF(m, D[m], b): nothing when the verifier knows this root (b is
            # true: it is the old root itself), else the subtree's own MTH.
            if not whole:
                ranges.append((begin, end))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
            m -= k
            whole = False
    ranges.reverse()
    return ranges


def range_hashes(source: NodeSource, ranges: Sequence[Range]) -> list[bytes]:
    """The MTH of each range, from one batched lookup of the complete subtrees."""
    covers = [range_nodes(begin, end) for begin, end in ranges]
    wanted = {node for cover in covers for node in cover}
    known = source.node_hashes(wanted)
    return [fold_right([known[node] for node in cover]) for cover in covers]


def inclusion_proof(source: NodeSource, index: int, tree_size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``tree_size``.
    Requires 0 <= index < tree_size and the source to hold that tree."""
    return range_hashes(source, inclusion_path(index, tree_size))


def consistency_proof(source: NodeSource, size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof between the trees of ``size1`` and ``size2``.
    Requires 0 < size1 <= size2 and the source to hold the tree of ``size2``."""
    return range_hashes(source, consistency_path(size1, size2))


def tree_root(source: NodeSource, tree_size: int) -> bytes:
    """MTH(D[tree_size]) from at most log2(tree_size) + 1 stored subtrees."""
    nodes = range_nodes(0, tree_size)
    known = source.node_hashes(nodes)
    return CompactRange(tree_size, [known[node] for node in nodes]).root()


class MemoryTree:
    """Every complete subtree of a list of leaf hashes, held in memory.

    For verifiers, tests and tools that have the leaf hashes at hand; the gateway
    itself serves proofs from the database tree store.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._compact = CompactRange()
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self._compact.size

    def append(self, leaf_hash: bytes) -> None:
        self._levels[0].append(leaf_hash)
        for node, value in self._compact.append(leaf_hash):
            if node.level == len(self._levels):
                self._levels.append([])
            self._levels[node.level].append(value)

    def root(self, tree_size: int | None = None) -> bytes:
        return self._compact.root() if tree_size is None else tree_root(self, tree_size)

    def node_hashes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        found: dict[NodeId, bytes] = {}
        for node in ids:
            level = self._levels[node.level] if node.level < len(self._levels) else []
            if node.index >= len(level):
                raise ProofUnavailable(
                    f"subtree {node} is not complete in a tree of size {self.size}"
                )
            found[node] = level[node.index]
        return found
