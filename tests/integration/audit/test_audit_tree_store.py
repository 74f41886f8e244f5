"""The database tree store on SQLite and PostgreSQL: filled in chunks, it serves the
same roots and proofs as an in-memory tree, and refuses sizes it does not hold."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, read_entries
from gateway.audit import tree_store as tree_store_module
from gateway.audit.tree_store import TreeStore
from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.proof import MemoryTree, consistency_proof, inclusion_proof

ORIGIN = "test.example/audit"


def append(engine: Engine, n: int) -> list[bytes]:
    async def run() -> None:
        log = AuditLog(engine, ORIGIN)
        await log.start()
        for start in range(0, n, 10):
            await log.append(
                *(
                    AuditRecord(kind="call.attempt", ref=f"r{i}", payload={"i": i})
                    for i in range(start, min(n, start + 10))
                )
            )
        await log.close()

    asyncio.run(run())
    return [entry.leaf_hash for entry in read_entries(engine)]


def test_store_matches_memory_tree(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_store_module, "FILL_CHUNK", 4)  # many small transactions
    hashes = append(engine, 45)
    memory = MemoryTree(hashes)
    store = TreeStore(engine)
    assert store.extend(13) == memory.root(13)
    assert store.filled_size() == 12  # the 13th leaf completes nothing
    assert store.extend(45) == memory.root()
    assert store.extend(20) == memory.root(20)  # already covered: read, not rebuilt
    for size in (1, 2, 13, 32, 45):
        assert store.root(size) == memory.root(size)
        for index in range(size):
            assert store.inclusion_proof(index, size) == inclusion_proof(memory, index, size)
        for size1 in range(1, size + 1):
            assert store.consistency_proof(size1, size) == consistency_proof(memory, size1, size)
    with engine.connect() as conn:
        nodes = conn.exec_driver_sql("SELECT count(*) FROM audit_tree_nodes").scalar()
    assert nodes == 45 - bin(45).count("1")  # every complete subtree above the leaves, once


def test_sizes_beyond_the_store_are_unavailable(engine: Engine) -> None:
    append(engine, 10)
    store = TreeStore(engine)
    with pytest.raises(ProofUnavailable, match="not checkpointed yet"):
        store.inclusion_proof(3, 10)
    store.extend(6)
    store.inclusion_proof(3, 6)
    with pytest.raises(ProofUnavailable, match="not all in the log"):
        store.extend(11)


def test_a_filler_that_loses_the_race_starts_over(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = append(engine, 30)
    winner, loser = TreeStore(engine), TreeStore(engine)
    read_leaves = loser._leaf_hashes
    raced: list[bool] = []

    def racing(start: int, stop: int) -> list[bytes]:
        if not raced:  # another process fills while this one computes
            raced.append(True)
            winner.extend(20)
        return read_leaves(start, stop)

    monkeypatch.setattr(loser, "_leaf_hashes", racing)
    assert loser.extend(30) == MemoryTree(hashes).root()
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM audit_tree_nodes").scalar()
    assert raced and count == 30 - bin(30).count("1")  # no node written twice


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_tree_nodes SET hash = :h", "DELETE FROM audit_tree_nodes"],
)
def test_tree_nodes_are_append_only(engine: Engine, statement: str) -> None:
    append(engine, 4)
    TreeStore(engine).extend(4)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(sa.text(statement), {"h": bytes(32)})
