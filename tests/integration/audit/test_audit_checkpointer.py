"""The checkpointer on SQLite and PostgreSQL: checkpoints every N entries or T seconds,
stored, published one file per size plus ``latest``, never backwards, signed so that
the exported public keys verify them; key rotation; refusal to sign a forked tree;
the ``GET /v1/audit/checkpoint`` handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.audit import (
    AuditLog,
    AuditRecord,
    Checkpoint,
    Checkpointer,
    DirectorySink,
    SigningKey,
    StoredCheckpoint,
    latest_checkpoint,
    open_checkpoint,
    parse_keys,
    read_entries,
    read_keys,
    receipt_for_entry,
    retire_key,
    verify_receipt,
)
from gateway.audit import checkpointer as checkpointer_module
from gateway.errors import ConfigError
from gateway.surfaces.audit_api import routes
from gateway.tlog.errors import ChainError, ProofError
from gateway.tlog.proof import MemoryTree
from tests.support.clock import FakeClock
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/audit"


@pytest.fixture
async def log(engine: Engine) -> AsyncIterator[AuditLog]:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    yield audit
    await audit.close()


async def append(log: AuditLog, n: int) -> None:
    for i in range(n):
        await log.append(AuditRecord(kind="call.attempt", ref=f"r{i}", payload={"i": i}))


async def wait_for_size(engine: Engine, size: int) -> StoredCheckpoint:
    def covering() -> StoredCheckpoint | None:
        stored = latest_checkpoint(engine)
        return stored if stored is not None and stored.size >= size else None

    return await eventually_async(covering, f"a checkpoint of size >= {size}")


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The head size each step of the checkpointer's background loop read, in order."""
    seen: list[int | None] = []
    real = checkpointer_module.chain_head

    def counted(engine: Engine) -> Any:
        head = real(engine)
        seen.append(None if head is None else head.size)
        return head

    monkeypatch.setattr(checkpointer_module, "chain_head", counted)
    return seen


async def looked_twice_more(looks: list[int | None]) -> None:
    """Returns once the background loop has read the head twice more: the second
    read started after this call, and its step (checkpointing or not) is decided."""
    seen = len(looks)
    await eventually_async(lambda: len(looks) >= seen + 2, "two more looks at the head")


async def test_checkpoints_every_n_entries_published_and_verifiable(
    engine: Engine, log: AuditLog, tmp_path: Path, looks: list[int | None]
) -> None:
    sink = DirectorySink(tmp_path / "checkpoints")
    key = SigningKey.generate(ORIGIN)
    checkpointer = Checkpointer(
        engine, ORIGIN, [key], every_entries=5, every_seconds=3600, sinks=[sink]
    )
    await checkpointer.start()
    try:
        await append(log, 4)
        await looked_twice_more(looks)
        assert looks[-1] == 4
        assert latest_checkpoint(engine) is None  # 4 < 5 and an hour has not passed
        await append(log, 1)
        assert (await wait_for_size(engine, 5)).size == 5
        await append(log, 7)
        await wait_for_size(engine, 10)
    finally:
        await checkpointer.close()
    with engine.connect() as conn:
        stored = [
            StoredCheckpoint(r.size, bytes(r.root), r.note, r.ts)
            for r in conn.exec_driver_sql("SELECT size, root, note, ts FROM audit_checkpoints")
        ]
    sizes = sorted(s.size for s in stored)
    assert sizes[0] == 5 and sizes[-1] == 12  # close() covered the tail
    files = {p.name for p in sink.path.iterdir() if not p.name.startswith(".")}
    assert files == {*(str(s) for s in sizes), "latest", "keys"}
    keys = parse_keys((sink.path / "keys").read_text())  # the exported public keys
    assert [k.verifier for k in keys] == [key.verifier] and keys[0].valid_from_size == 0
    hashes = [e.leaf_hash for e in read_entries(engine)]
    tree = MemoryTree(hashes)
    for row in stored:
        text = (sink.path / str(row.size)).read_text()
        assert text == row.note
        checkpoint, _ = open_checkpoint(text, keys, origin=ORIGIN)
        assert checkpoint == Checkpoint(ORIGIN, row.size, tree.root(row.size))
    assert (sink.path / "latest").read_text() == next(s.note for s in stored if s.size == 12)
    entry = read_entries(engine, start=7, stop=8)[0]
    receipt = receipt_for_entry(engine, 7)
    assert verify_receipt(receipt, entry.leaf, origin=ORIGIN, keys=keys).size == 12


async def test_checkpoint_after_t_seconds(
    engine: Engine, log: AuditLog, looks: list[int | None]
) -> None:
    clock = FakeClock()
    checkpointer = Checkpointer(
        engine,
        ORIGIN,
        [SigningKey.generate(ORIGIN)],
        every_entries=1000,
        every_seconds=60,
        clock=clock,
    )
    await checkpointer.start()
    try:
        await append(log, 3)
        clock.advance(59.9)
        await looked_twice_more(looks)
        assert latest_checkpoint(engine) is None  # 3 < 1000, and not yet a minute
        clock.advance(0.1)
        assert (await wait_for_size(engine, 3)).size == 3
    finally:
        await checkpointer.close()


async def test_a_following_checkpointer_sleeps_until_its_log_appends(
    engine: Engine, log: AuditLog, looks: list[int | None]
) -> None:
    """With nothing owed, a checkpointer that follows its log reads the head no more
    (its fallback here is an hour); an append through the log wakes it, and the
    checkpoints come as they did (docs/decisions/0042)."""
    clock = FakeClock()
    checkpointer = Checkpointer(
        engine,
        ORIGIN,
        [SigningKey.generate(ORIGIN)],
        every_entries=3,
        every_seconds=3600,
        clock=clock,
    )
    checkpointer.follow(log)
    await checkpointer.start()
    try:
        for size in (3, 6, 9):
            # Asleep: its last look found the empty log, or everything covered.
            await eventually_async(lambda: checkpointer._sleeping is not None, "asleep")
            seen = len(looks)
            await append(log, 3)
            assert (await wait_for_size(engine, size)).size == size
            assert len(looks) > seen
        # Owed nothing, asleep again; entries short of every_entries are owed: it
        # looks again (every 0.1 s) until the hour on its clock has passed.
        await eventually_async(lambda: checkpointer._sleeping is not None, "asleep again")
        await append(log, 1)
        await looked_twice_more(looks)
        assert looks[-1] == 10 and latest_checkpoint(engine).size == 9  # type: ignore[union-attr]
        clock.advance(3600)
        assert (await wait_for_size(engine, 10)).size == 10
    finally:
        await checkpointer.close()


async def test_nothing_to_sign_and_never_backwards(
    engine: Engine, log: AuditLog, tmp_path: Path
) -> None:
    sink = DirectorySink(tmp_path)
    key = SigningKey.generate(ORIGIN)
    checkpointer = Checkpointer(engine, ORIGIN, [key], every_seconds=3600, sinks=[sink])
    await checkpointer.start()
    try:
        assert await checkpointer.checkpoint_now() is None  # the empty log is not signed
        await append(log, 3)
        first = await checkpointer.checkpoint_now()
        assert first is not None and first.size == 3
        assert await checkpointer.checkpoint_now() == first  # no new entries: no new row
        await append(log, 2)
        second = await checkpointer.checkpoint_now()
        assert second is not None and second.size == 5
    finally:
        await checkpointer.close()
    # Republishing the older one (a restarted process, a stale replica) is refused.
    assert not sink.publish(Checkpoint(ORIGIN, 3, first.root), first.note)
    assert sink.published_size() == 5
    assert (tmp_path / "latest").read_text() == second.note


async def test_two_checkpointers_on_one_database_agree(engine: Engine, log: AuditLog) -> None:
    key = SigningKey.generate(ORIGIN)
    a = Checkpointer(engine, ORIGIN, [key], every_seconds=3600)
    b = Checkpointer(engine, ORIGIN, [key], every_seconds=3600)
    await a.start()
    await b.start()
    try:
        for _ in range(5):
            await append(log, 3)
            await asyncio.gather(a.checkpoint_now(), b.checkpoint_now())
    finally:
        await a.close()
        await b.close()
    with engine.connect() as conn:
        sizes = [r[0] for r in conn.exec_driver_sql("SELECT size FROM audit_checkpoints")]
    assert sorted(sizes) == sorted(set(sizes)) and max(sizes) == 15


async def test_rotation_dual_signs_then_retires(engine: Engine, log: AuditLog) -> None:
    old, new = SigningKey.generate(ORIGIN), SigningKey.generate(ORIGIN)
    first = Checkpointer(engine, ORIGIN, [old], every_seconds=3600)
    await first.start()
    await append(log, 2)
    await first.checkpoint_now()
    await first.close()
    # The new key is added beside the old one: valid from the next checkpoint on.
    overlap = Checkpointer(engine, ORIGIN, [old, new], every_seconds=3600)
    await overlap.start()
    await append(log, 2)
    dual = await overlap.checkpoint_now()
    assert dual is not None and dual.note.count("\n— ") == 2
    retire_key(engine, old.verifier, valid_to_size=dual.size)
    await append(log, 2)
    after = await overlap.checkpoint_now()
    await overlap.close()
    assert after is not None and after.note.count("\n— ") == 1
    keys = read_keys(engine)
    assert [(k.verifier, k.valid_from_size, k.valid_to_size) for k in keys] == [
        (old.verifier, 0, 4),
        (new.verifier, 3, None),
    ]
    for stored in (dual, after):
        open_checkpoint(stored.note, keys, origin=ORIGIN)
    # Only the old key configured: nothing it may sign any more.
    stale = Checkpointer(engine, ORIGIN, [old], every_seconds=3600)
    await stale.start()
    await append(log, 1)
    with pytest.raises(ConfigError, match="no configured audit signing key is valid"):
        await stale.checkpoint_now()
    await stale.close()  # its last checkpoint fails the same way: logged, not raised


async def test_keys_table_allows_one_end_and_no_deletion(engine: Engine) -> None:
    key = SigningKey.generate(ORIGIN)
    checkpointer = Checkpointer(engine, ORIGIN, [key], every_seconds=3600)
    await checkpointer.start()
    await checkpointer.close()
    retire_key(engine, key.verifier, valid_to_size=10)
    for statement in (
        "UPDATE audit_keys SET valid_to_size = 20",
        "UPDATE audit_keys SET valid_from_size = 1",
        "DELETE FROM audit_keys",
    ):
        with pytest.raises(sa.exc.DBAPIError, match=r"only valid_to_size|append-only"):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    assert [k.valid_to_size for k in read_keys(engine)] == [10]


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_checkpoints SET note = 'x'", "DELETE FROM audit_checkpoints"]
)
async def test_checkpoints_are_append_only(engine: Engine, log: AuditLog, statement: str) -> None:
    checkpointer = Checkpointer(engine, ORIGIN, [SigningKey.generate(ORIGIN)], every_seconds=3600)
    await checkpointer.start()
    await append(log, 1)
    await checkpointer.close()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)


async def test_refuses_to_sign_a_tree_inconsistent_with_its_last_checkpoint(
    engine: Engine, log: AuditLog
) -> None:
    checkpointer = Checkpointer(engine, ORIGIN, [SigningKey.generate(ORIGIN)], every_seconds=3600)
    await checkpointer.start()
    await append(log, 8)
    await checkpointer.checkpoint_now()
    # Someone with the database owner's rights rewrites a stored subtree.
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_tree_nodes_no_update")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE audit_tree_nodes DISABLE TRIGGER audit_tree_nodes_no_update_delete"
            )
        # Node (3, 0) covers the 8 checkpointed leaves: the next root builds on it.
        # Node (2, 1) is in the inclusion proofs of entries 0-3.
        conn.execute(
            sa.text(
                "UPDATE audit_tree_nodes SET hash = :h "
                "WHERE (level = 3 AND idx = 0) OR (level = 2 AND idx = 1)"
            ),
            {"h": bytes(32)},
        )
    await append(log, 3)
    with pytest.raises(ProofError):
        await checkpointer.checkpoint_now()
    with pytest.raises(ProofError):  # nor does it hand out a receipt that would not verify
        receipt_for_entry(engine, 2)
    await checkpointer.close()
    assert latest_checkpoint(engine).size == 8  # type: ignore[union-attr]


def test_checkpointer_config_errors(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="named"):
        Checkpointer(engine, ORIGIN, [SigningKey.generate("other.example/log")])
    with pytest.raises(ConfigError, match="at least one"):
        Checkpointer(engine, ORIGIN, [])
    with pytest.raises(ConfigError, match="key name"):
        Checkpointer(engine, "has space", [SigningKey.generate(ORIGIN)])


async def test_checkpoint_endpoint(engine: Engine, log: AuditLog) -> None:
    app = Starlette(routes=routes(engine))
    key = SigningKey.generate(ORIGIN)
    checkpointer = Checkpointer(engine, ORIGIN, [key], every_seconds=3600)
    await checkpointer.start()
    try:
        with TestClient(app) as client:
            missing = client.get("/v1/audit/checkpoint")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "audit_proof_unavailable"
            await append(log, 2)
            first = await checkpointer.checkpoint_now()
            await append(log, 2)
            second = await checkpointer.checkpoint_now()
            assert first is not None and second is not None
            latest = client.get("/v1/audit/checkpoint")
            assert latest.status_code == 200
            assert latest.headers["content-type"] == "text/plain; charset=utf-8"
            assert latest.text == second.note
            older = client.get("/v1/audit/checkpoint", params={"size": "2"})
            assert older.text == first.note and "immutable" in older.headers["cache-control"]
            # The latest may still gain witnesses' cosignatures: revalidated, not cached.
            newest = client.get("/v1/audit/checkpoint", params={"size": "4"})
            assert newest.headers["cache-control"] == "no-cache"
            assert client.get("/v1/audit/checkpoint?size=3").status_code == 404
            assert client.get("/v1/audit/checkpoint?size=02").status_code == 400
            assert client.get("/v1/audit/checkpoint?size=-1").status_code == 400
            keys = parse_keys(client.get("/v1/audit/keys").text)
            open_checkpoint(latest.text, keys, origin=ORIGIN)
    finally:
        await checkpointer.close()


async def test_a_truncated_log_is_reported_not_resigned(engine: Engine, log: AuditLog) -> None:
    checkpointer = Checkpointer(engine, ORIGIN, [SigningKey.generate(ORIGIN)], every_seconds=3600)
    await checkpointer.start()
    await append(log, 6)
    await checkpointer.checkpoint_now()
    with engine.begin() as conn:  # the database owner drops the tail
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_entries_no_delete")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_update_delete"
            )
        conn.exec_driver_sql("DELETE FROM audit_payloads WHERE seq >= 4")
        conn.exec_driver_sql("DELETE FROM audit_entries WHERE seq >= 4")
    with pytest.raises(ChainError, match="a checkpoint of size 6 was signed"):
        await checkpointer.checkpoint_now()
    await checkpointer.close()
