"""The tree store: complete subtree hashes kept in the database, for O(log n) proofs.

Level 0 of the tree are the leaf hashes already in ``audit_entries``; every complete
subtree above them is a row ``(level, idx, hash)`` of ``audit_tree_nodes``. A proof
or root of any size the store covers is then one batched lookup of at most
2·log2(n) rows, instead of rehashing the log (docs/decisions/0008).

The store is filled lazily, by the checkpointer, not by the sequencer: appends stay
as they were (one transaction of entries and payloads), and only checkpointed sizes
need proofs. Filling reads the new leaf hashes, continues the tree's right edge
(`CompactRange`) and inserts the nodes it completes, in bounded chunks, each in a
short transaction under the tree lock.

How far the store is filled is read from the rows themselves: nodes are written in
leaf order, so if level-1 node ``i`` exists, every complete subtree within the first
``2i + 2`` leaves does. No separate counter can disagree with the nodes.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, Engine, func, select

from gateway.store import dialect_of, exclusive_transaction
from gateway.store.tables import audit_entries, audit_tree_nodes
from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.merkle import CompactRange, NodeId, range_nodes
from gateway.tlog.proof import consistency_proof, inclusion_proof, tree_root

# The PostgreSQL advisory lock of everything derived from the log: tree nodes and
# checkpoints (ASCII "agwtree_"). Distinct from the sequencer's writer lock, so
# filling the tree never holds up appends (on SQLite there is only one lock).
TREE_LOCK_KEY = 0x616777747265655F

# Leaves per filling transaction: bounds how long SQLite's single write lock is held
# (appends wait meanwhile) when a large backlog is filled.
FILL_CHUNK = 8192

# How many times `extend` starts over when another process filled the same range.
_MAX_RETRIES = 5

_N = audit_tree_nodes.c
_E = audit_entries.c


class _FillConflict(Exception):
    """Another process extended the store while this one computed the same nodes."""


class TreeStore:
    """The database-backed `NodeSource` of the audit log's tree."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = dialect_of(engine)

    def node_hashes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        """The hashes of ``ids`` (level 0 from the entries, above from the nodes), in
        one round trip. Raises ProofUnavailable if any is not stored (yet)."""
        found: dict[NodeId, bytes] = {}
        if ids:
            with self._engine.connect() as conn:
                sql, params = _lookup_sql(ids, self._dialect.mark)
                for level, index, value in conn.exec_driver_sql(sql, params):
                    found[NodeId(level, index)] = bytes(value)
        if len(found) != len(ids):
            missing = sorted(set(ids) - set(found))
            raise ProofUnavailable(
                f"the tree store does not hold {len(missing)} needed subtree(s), e.g. "
                f"level {missing[0].level} index {missing[0].index}: that tree size is "
                "not checkpointed yet"
            )
        return found

    def filled_size(self, conn: Connection | None = None) -> int:
        """A tree size up to which every complete subtree is stored (the true one, or
        one less when that is odd: its last leaf completes nothing)."""
        if conn is None:
            with self._engine.connect() as own:
                return self.filled_size(own)
        last = conn.execute(select(func.max(_N.idx)).where(_N.level == 1)).scalar()
        return 0 if last is None else 2 * (last + 1)

    def root(self, tree_size: int) -> bytes:
        """MTH of the first ``tree_size`` leaves; requires the store to cover it."""
        return tree_root(self, tree_size)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return inclusion_proof(self, index, tree_size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return consistency_proof(self, size1, size2)

    def extend(self, tree_size: int) -> bytes:
        """Stores every complete subtree within the first ``tree_size`` leaves and
        returns their root. Requires those entries to be committed. Safe to run in
        several processes at once: they serialize on the tree lock and a process that
        loses a race starts over from what the winner stored."""
        for _ in range(_MAX_RETRIES):
            try:
                return self._extend_once(tree_size)
            except _FillConflict:
                continue
        raise ProofUnavailable(
            f"could not extend the tree store to size {tree_size}: other writers kept "
            "filling the same range"
        )

    def _extend_once(self, tree_size: int) -> bytes:
        filled = self.filled_size()
        if tree_size <= filled:
            return self.root(tree_size)
        frontier = range_nodes(0, filled)
        known = self.node_hashes(frontier)
        compact = CompactRange(filled, [known[node] for node in frontier])
        position = filled
        while position < tree_size:
            stop = min(tree_size, position + FILL_CHUNK)
            rows: list[tuple[int, int, bytes]] = []
            for value in self._leaf_hashes(position, stop):
                for node, node_value in compact.append(value):
                    rows.append((node.level, node.index, node_value))
            self._write(rows, expected_filled=position & ~1)
            position = stop
        return compact.root()

    def _leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        mark = self._dialect.mark
        with self._engine.connect() as conn:
            result = conn.exec_driver_sql(
                "SELECT leaf_hash FROM audit_entries "
                f"WHERE seq >= {mark} AND seq < {mark} ORDER BY seq",
                (start, stop),
            )
            hashes = [bytes(row[0]) for row in result]
        if len(hashes) != stop - start:
            raise ProofUnavailable(
                f"entries {start}..{stop - 1} are not all in the log (found {len(hashes)}); "
                "a tree can only cover committed entries"
            )
        return hashes

    def _write(self, rows: list[tuple[int, int, bytes]], *, expected_filled: int) -> None:
        with exclusive_transaction(self._engine, TREE_LOCK_KEY) as conn:
            # Checked under the lock: the rows were computed from a store of this size.
            if self.filled_size(conn) != expected_filled:
                raise _FillConflict
            if not rows:
                return
            # Thousands of rows per chunk, at driver level (`Dialect.insert_rows`).
            self._dialect.insert_rows(conn, audit_tree_nodes, rows)


def _lookup_sql(ids: Collection[NodeId], mark: str) -> tuple[str, tuple[int, ...]]:
    """One statement fetching ``(level, idx, hash)`` of every node in ``ids``.

    Plain SQL on purpose: a proof needs ~40 rows and building the equivalent
    SQLAlchemy expression costs more than the query (≈ 4 ms vs 0.3 ms at 1M
    entries). Each node is an equality pair on the primary key, which SQLite runs as
    a multi-index OR and PostgreSQL as a bitmap OR of index scans; a row-value IN
    list would make SQLite scan the table.
    """
    leaves = sorted({node.index for node in ids if node.level == 0})
    inner = sorted({node for node in ids if node.level > 0})
    parts = []
    params: list[int] = []
    if leaves:
        marks = ", ".join([mark] * len(leaves))
        parts.append(f"SELECT 0, seq, leaf_hash FROM audit_entries WHERE seq IN ({marks})")
        params.extend(leaves)
    if inner:
        pair = f"(level = {mark} AND idx = {mark})"
        condition = " OR ".join([pair] * len(inner))
        parts.append(f"SELECT level, idx, hash FROM audit_tree_nodes WHERE {condition}")
        for node in inner:
            params.extend(node)
    return " UNION ALL ".join(parts), tuple(params)
