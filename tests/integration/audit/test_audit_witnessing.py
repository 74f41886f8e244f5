"""Witnessing on SQLite and PostgreSQL, against real `gateway witness serve` processes:
each checkpoint is cosigned and published with the cosignatures; a witness that is
down delays nothing and is asked again; a witness ahead of the gateway's record
answers 409 and is caught up; a forked log (same key and origin, another history) is
refused and nothing of it is cosigned."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, Checkpointer, DirectorySink, SigningKey
from gateway.audit.cosignatures import cosignature_lines
from gateway.audit.stored_checkpoints import latest_checkpoint, log_note
from gateway.audit.tree_store import TreeStore
from gateway.audit.witnessing import WitnessEndpoint, Witnessing
from gateway.metrics import REGISTRY
from gateway.store import create_engine, migrate
from gateway.tlog.consistency import format_consistency_proof
from gateway.tlog.cosignature import verify_cosignatures
from gateway.tlog.errors import NoteSignatureError
from tests.support.clock import FakeClock
from tests.support.processes import free_port
from tests.support.waiting import eventually_async
from tests.support.witnesses import WitnessServer

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/witnessed"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture
def witnesses(tmp_path: Path, key: SigningKey) -> Iterator[list[WitnessServer]]:
    servers = [
        WitnessServer.create(tmp_path / f"w{i}", f"witness.test/w{i}", [key.verifier.encode()])
        for i in (1, 2)
    ]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
async def log(engine: Engine) -> AsyncIterator[AuditLog]:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    yield audit
    await audit.close()


async def append(log: AuditLog, n: int, tag: str = "") -> None:
    for i in range(n):
        await log.append(AuditRecord(kind="call.attempt", ref=f"r{tag}{i}", payload={"i": i}))


async def wait_for_size(engine: Engine, size: int) -> None:
    def covering() -> bool:
        stored = latest_checkpoint(engine)
        return stored is not None and stored.size >= size

    await eventually_async(covering, f"a checkpoint of size >= {size}")


def endpoints(servers: list[WitnessServer]) -> list[WitnessEndpoint]:
    return [WitnessEndpoint(s.key, s.url, timeout_s=10) for s in servers]


def failures(witness: WitnessServer, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "gateway_audit_witness_failures_total", {"witness": witness.name, "reason": reason}
    )
    return value or 0.0


async def started(
    engine: Engine, key: SigningKey, servers: list[WitnessServer], tmp_path: Path, clock=None
) -> Checkpointer:
    kwargs = {} if clock is None else {"clock": clock}
    checkpointer = Checkpointer(
        engine,
        ORIGIN,
        [key],
        every_entries=10**6,
        every_seconds=3600,
        sinks=[DirectorySink(tmp_path / "published")],
        witnessing=Witnessing(engine, endpoints(servers), **kwargs),
    )
    await checkpointer.start()
    return checkpointer


async def test_checkpoints_are_cosigned_published_and_served(
    engine: Engine, log: AuditLog, key: SigningKey, witnesses: list[WitnessServer], tmp_path: Path
) -> None:
    for server in witnesses:
        server.start()
    checkpointer = await started(engine, key, witnesses, tmp_path)
    try:
        await append(log, 5)
        await checkpointer.checkpoint_now()
        await append(log, 4, "b")
        stored = await checkpointer.checkpoint_now()  # from size 5 to 9, with a proof
    finally:
        await checkpointer.close()
    assert stored is not None and stored.size == 9
    keys = [s.key for s in witnesses]
    note = latest_checkpoint(engine).note
    assert len(verify_cosignatures(note, keys, minimum=2)) == 2
    assert len(cosignature_lines(engine, 5)) == 2
    assert (tmp_path / "published" / "latest").read_text() == note
    assert (tmp_path / "published" / "9").read_text() == note


async def test_a_down_witness_blocks_nothing_and_is_asked_again(
    engine: Engine, log: AuditLog, key: SigningKey, witnesses: list[WitnessServer], tmp_path: Path
) -> None:
    up, down = witnesses
    up.start()
    clock = FakeClock()
    before = failures(down, "unavailable")
    checkpointer = await started(engine, key, witnesses, tmp_path, clock)
    try:
        await append(log, 3)
        stored = await checkpointer.checkpoint_now()
        assert stored is not None and stored.size == 3  # stored and published regardless
        assert failures(down, "unavailable") == before + 1
        note = latest_checkpoint(engine).note
        verify_cosignatures(note, [up.key], minimum=1)
        with pytest.raises(NoteSignatureError):
            verify_cosignatures(note, [down.key], minimum=1)
        assert (tmp_path / "published" / "latest").read_text() == note
        down.start()
        await checkpointer.checkpoint_now()
        assert failures(down, "unavailable") == before + 1  # backing off: not asked yet
        clock.advance(2)  # past the first back-off (1 s)
        await checkpointer.checkpoint_now()
    finally:
        await checkpointer.close()
    note = latest_checkpoint(engine).note
    assert len(verify_cosignatures(note, [up.key, down.key], minimum=2)) == 2
    assert (tmp_path / "published" / "3").read_text() == note  # republished, same size


async def test_a_witness_ahead_answers_409_and_is_caught_up(
    engine: Engine, log: AuditLog, key: SigningKey, witnesses: list[WitnessServer], tmp_path: Path
) -> None:
    witness = witnesses[0]
    witness.start()
    plain = Checkpointer(engine, ORIGIN, [key], every_entries=10**6, every_seconds=3600)
    await plain.start()
    await append(log, 4)
    await plain.checkpoint_now()
    await plain.close()
    # Someone (another replica, an earlier run whose answer was lost) got size 4
    # cosigned; this database has no record of it.
    body = format_consistency_proof(0, [], log_note(engine, 4))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(witness.url + "/add-checkpoint", content=body)
    assert response.status_code == 200
    await append(log, 3, "b")
    checkpointer = await started(engine, key, [witness], tmp_path)
    try:
        await checkpointer.checkpoint_now()  # old 0 -> 409 "4" -> old 4 with a proof
    finally:
        await checkpointer.close()
    verify_cosignatures(latest_checkpoint(engine).note, [witness.key], minimum=1)
    assert latest_checkpoint(engine).size == 7


async def test_a_forked_log_is_refused_and_not_cosigned(
    engine: Engine, log: AuditLog, key: SigningKey, witnesses: list[WitnessServer], tmp_path: Path
) -> None:
    witness = witnesses[0]
    witness.start()
    checkpointer = await started(engine, key, [witness], tmp_path)
    try:
        await append(log, 6)
        await checkpointer.checkpoint_now()
    finally:
        await checkpointer.close()
    # A second database, same key and origin, another history (a fork: a restored
    # backup that diverged, or a copy shown to someone else).
    fork = create_engine(f"sqlite:///{tmp_path / 'fork.db'}")
    migrate(fork)
    fork_log = AuditLog(fork, ORIGIN)
    await fork_log.start()
    before = failures(witness, "refused")
    forked = await started(fork, key, [witness], tmp_path / "fork")
    try:
        await append(fork_log, 9, "fork")
        stored = await forked.checkpoint_now()
        assert stored is not None and stored.size == 9  # the log itself is not blocked
        # The fork's database has no record of the witness: 409 "6", then a proof
        # from 6 that cannot lead from the witness's root: 422.
        assert failures(witness, "refused") == before + 1
        assert cosignature_lines(fork, 9) == []
        assert TreeStore(fork).root(6) != latest_checkpoint(engine).root
    finally:
        await forked.close()
        await fork_log.close()
        fork.dispose()
    assert "refused checkpoint" in witness.log() or "not consistent" in witness.log()


async def test_a_hanging_witness_delays_no_checkpoint(
    engine: Engine, log: AuditLog, key: SigningKey, tmp_path: Path
) -> None:
    # Accepts connections (the kernel's backlog) and never answers: each request to it
    # hangs for the witness's whole timeout, longer than this test waits for anything.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    hanging = WitnessEndpoint(_dummy_key(), f"http://127.0.0.1:{port}", timeout_s=600)
    checkpointer = Checkpointer(
        engine,
        ORIGIN,
        [key],
        every_entries=2,
        every_seconds=3600,
        witnessing=Witnessing(engine, [hanging]),
    )
    await checkpointer.start()
    try:
        await append(log, 2)
        await wait_for_size(engine, 2)
        await append(log, 2, "b")
        await wait_for_size(engine, 4)  # made while the witness still hangs on size 2
    finally:
        silent.close()  # the pending connection is reset: the final round fails at once
        await checkpointer.close()


async def test_unreachable_witness_never_delays_appends(
    engine: Engine, log: AuditLog, key: SigningKey, tmp_path: Path
) -> None:
    # A port nobody listens on: every request fails at once; appends never wait on it.
    server = WitnessServer(tmp_path, "witness.test/nobody", _dummy_key(), free_port(), [])
    checkpointer = await started(engine, key, [server], tmp_path)
    try:
        await append(log, 20)
        stored = await checkpointer.checkpoint_now()
        assert stored is not None and stored.size == 20
    finally:
        await checkpointer.close()


def _dummy_key():
    from gateway.tlog.cosignature import WitnessKey

    return WitnessKey("witness.test/nobody", bytes(range(32)))
