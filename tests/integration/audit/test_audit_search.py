"""`gateway.audit.search` on both databases: filters, paging, and what checking an entry
finds: verified with a receipt that verifies independently, pending past the latest
checkpoint, erased payloads, and tampering done in the database (triggers disabled,
as an operator with an SQL shell could) reported as failed with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.audit import (
    AuditLog,
    AuditRecord,
    Checkpointer,
    SigningKey,
    build_leaf,
    leaf_hash,
    parse_leaf,
    read_entries,
    read_keys,
    verify_inclusion,
    verify_receipt,
)
from gateway.audit.erasure import erase_payload
from gateway.audit.search import (
    PayloadState,
    SearchQuery,
    Verification,
    check_entry,
    search,
)
from gateway.tlog.errors import AuditEntryNotFound

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/audit"
CHECKPOINTED = 9  # three calls; then one more call past the checkpoint


def _call(n: int, sub: str, tool: str) -> list[AuditRecord]:
    ref = f"req{n}"
    return [
        AuditRecord("call.attempt", ref, {"request_id": ref, "sub": sub}, subject=sub, tool=tool),
        AuditRecord("call.decision", ref, {"allow": True}, subject=sub, tool=tool),
        AuditRecord("call.outcome", ref, {"status": "ok"}, subject=sub, tool=tool),
    ]


@pytest.fixture
async def log(engine: Engine) -> AsyncIterator[Engine]:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    checkpointer = Checkpointer(
        engine, ORIGIN, [SigningKey.generate(ORIGIN)], every_entries=10**6, every_seconds=3600
    )
    await checkpointer.start()
    try:
        await audit.append(*_call(0, "alice", "up__echo"))
        await audit.append(*_call(1, "bob", "up__echo"))
        await audit.append(*_call(2, "alice", "up__write"))
        await checkpointer.checkpoint_now()
        await checkpointer.close()  # its final checkpoint: the same size, none new
        await audit.append(*_call(3, "bob", "up__write"))  # not checkpointed
    finally:
        await checkpointer.close()
        await audit.close()
    yield engine


def _seqs(engine: Engine, **filters: object) -> list[int]:
    result = search(engine, ORIGIN, SearchQuery(**filters))  # type: ignore[arg-type]
    return [checked.entry.seq for checked in result.entries]


async def test_filters_match_and_results_are_newest_first(log: Engine) -> None:
    assert _seqs(log) == list(range(11, -1, -1))
    assert _seqs(log, principal="alice") == [8, 7, 6, 2, 1, 0]
    assert _seqs(log, tool="up__write", kind="call.decision") == [10, 7]
    assert _seqs(log, ref="req1") == [5, 4, 3]
    assert _seqs(log, principal="nobody") == []
    entries = read_entries(log)
    middle = entries[6].ts
    assert _seqs(log, since=middle) == [e.seq for e in reversed(entries) if e.ts >= middle]
    assert _seqs(log, until=middle) == [e.seq for e in reversed(entries) if e.ts <= middle]
    assert _seqs(log, since="2999-01-01T00:00:00.000Z") == []


async def test_paging_with_the_cursor_visits_every_match_once(log: Engine) -> None:
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        result = search(log, ORIGIN, SearchQuery(limit=5, before=before))
        seen += [checked.entry.seq for checked in result.entries]
        pages += 1
        if result.next_before is None:
            break
        before = result.next_before
    assert seen == list(range(11, -1, -1))
    assert pages == 3
    # An exact fit has no next page.
    assert search(log, ORIGIN, SearchQuery(limit=12)).next_before is None
    assert search(log, ORIGIN, SearchQuery(limit=0)).entries == []


async def test_checkpointed_entries_verify_and_their_receipts_verify_alone(log: Engine) -> None:
    result = search(log, ORIGIN, SearchQuery())
    assert result.checkpoint is not None and result.checkpoint.size == CHECKPOINTED
    by_seq = {checked.entry.seq: checked for checked in result.entries}
    keys = read_keys(log)
    for seq in range(CHECKPOINTED):
        checked = by_seq[seq]
        assert checked.status is Verification.VERIFIED, checked.reason
        assert checked.payload_state is PayloadState.PRESENT
        proof = checked.proof
        assert proof is not None and (proof.leaf_index, proof.tree_size) == (seq, CHECKPOINTED)
        assert checked.summary() == f"included in checkpoint {CHECKPOINTED}, verified"
        # The proof and the receipt each check out on their own.
        verify_inclusion(leaf_hash(checked.entry.leaf), seq, CHECKPOINTED, proof.hashes, proof.root)
        assert verify_receipt(proof.receipt, checked.entry.leaf, origin=ORIGIN, keys=keys).size == 9
    for seq in (9, 10, 11):
        checked = by_seq[seq]
        assert checked.status is Verification.PENDING
        assert checked.proof is None
        assert "latest checkpoint covers 9 entries" in (checked.reason or "")
        assert checked.summary() == "not yet in a checkpoint"


async def test_without_any_checkpoint_everything_is_pending(engine: Engine) -> None:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    try:
        await audit.append(*_call(0, "alice", "up__echo"))
    finally:
        await audit.close()
    checked = check_entry(engine, ORIGIN, 0)
    assert checked.status is Verification.PENDING
    assert checked.reason == "not yet in a checkpoint (no checkpoint yet)"
    assert checked.checkpoint is None


async def test_one_entry_by_seq(log: Engine) -> None:
    assert check_entry(log, ORIGIN, 4).entry.ref == "req1"
    with pytest.raises(AuditEntryNotFound, match="no audit entry 12"):
        check_entry(log, ORIGIN, 12)


async def test_an_erased_payload_is_shown_erased_and_still_verifies(log: Engine) -> None:
    erasure = erase_payload(log, ORIGIN, 3, "DSR-1")
    checked = check_entry(log, ORIGIN, 3)
    assert checked.entry.payload is None
    assert checked.payload_state is PayloadState.ERASED
    assert checked.erasure_seq == erasure.erasure_seq == 12
    assert checked.status is Verification.VERIFIED
    # Erased entries lose their indexed principal, so that filter no longer finds it.
    assert 3 not in _seqs(log, principal="bob")


def _unprotect(engine: Engine, table: str) -> None:
    """Disables the append-only triggers of ``table`` (audit_entries or audit_payloads)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER {table}_no_update")
        else:
            trigger = (
                f"{table}_no_update_delete" if table == "audit_entries" else f"{table}_no_update"
            )
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")


async def test_an_edited_payload_fails(log: Engine) -> None:
    _unprotect(log, "audit_payloads")
    with log.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_payloads SET payload = :p WHERE seq = 4"),
            {"p": '{"allow":false}'},
        )
    checked = check_entry(log, ORIGIN, 4)
    assert checked.status is Verification.FAILED
    assert checked.reason == "audit entry 4: the payload does not match the leaf's commitment"
    assert checked.code == "audit_chain_invalid"
    assert checked.summary().startswith("FAILED: audit entry 4")
    assert check_entry(log, ORIGIN, 5).status is Verification.VERIFIED  # only that one


async def test_a_deleted_payload_without_an_erasure_entry_fails(log: Engine) -> None:
    with log.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_payloads WHERE seq = 2"))
    checked = check_entry(log, ORIGIN, 2)
    assert checked.payload_state is PayloadState.MISSING
    assert checked.status is Verification.FAILED
    assert "no erasure entry names it" in (checked.reason or "")


async def test_a_rewritten_leaf_with_its_hash_recomputed_fails_its_proof(log: Engine) -> None:
    entry = read_entries(log, start=1, stop=2)[0]
    fields = parse_leaf(entry.leaf)
    forged = build_leaf(
        origin=ORIGIN,
        seq=1,
        prev=fields.prev,
        ts=fields.ts,
        kind=fields.kind,
        ref="req-forged",
        commitment=fields.commitment,
    )
    _unprotect(log, "audit_entries")
    with log.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_entries SET leaf = :l, leaf_hash = :h, ref = :r WHERE seq = 1"),
            {"l": forged, "h": leaf_hash(forged), "r": "req-forged"},
        )
    checked = check_entry(log, ORIGIN, 1)
    assert checked.status is Verification.FAILED
    assert checked.code == "audit_root_mismatch"
    assert "mismatch" in (checked.reason or "")


async def test_a_leaf_edited_in_place_or_an_edited_index_fails(log: Engine) -> None:
    _unprotect(log, "audit_entries")
    entry = read_entries(log, start=6, stop=7)[0]
    with log.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_entries SET leaf = :l WHERE seq = 6"),
            {"l": entry.leaf.replace(b"call.attempt", b"call.attemps")},
        )
        conn.execute(sa.text("UPDATE audit_entries SET kind = 'call.outcome' WHERE seq = 7"))
    edited = check_entry(log, ORIGIN, 6)
    assert edited.status is Verification.FAILED
    assert "do not hash to the stored leaf hash" in (edited.reason or "")
    reindexed = check_entry(log, ORIGIN, 7)
    assert reindexed.status is Verification.FAILED
    assert "indexed kind 'call.outcome' differs from the leaf's 'call.decision'" in (
        reindexed.reason or ""
    )
