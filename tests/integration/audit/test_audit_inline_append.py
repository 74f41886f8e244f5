"""AuditLog on a SQLite file: when an append commits on the caller's event loop instead
of the writer thread, and that doing so never stalls the loop or reorders the chain.

The log reads a `FakeClock`: time between appends and the duration of each commit are
what the test says they are, not what a busy machine makes of them, so where each
append commits follows from the rule alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, read_entries, verify_chain
from gateway.audit.appender import Appender, WriterBusy
from gateway.errors import AuditUnavailable
from gateway.store import create_engine, migrate
from gateway.store.dialect_sqlite import SQLITE_BUSY_TIMEOUT_MS
from tests.support.audit_faults import repair_commits, sabotage_commits
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

on_a_sqlite_file = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ORIGIN = "test.example/audit"


def record(i: int) -> AuditRecord:
    return AuditRecord(kind="call.attempt", ref=f"req-{i}", payload={"i": i})


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of the thread of every committed batch, in commit order."""
    names: list[str] = []
    real_write = Appender.write

    def write(self: Appender, groups: Any, earlier: Any = ()) -> list[list[int]]:
        result = real_write(self, groups, earlier)
        names.append(threading.current_thread().name)
        return result

    monkeypatch.setattr(Appender, "write", write)
    yield names


@pytest.fixture
def clock() -> FakeClock:
    """The log's clock: still unless a test moves it, so every commit takes no time."""
    return FakeClock()


@pytest.fixture
async def log(engine: Engine, writers: list[str], clock: FakeClock) -> AsyncIterator[AuditLog]:
    audit = AuditLog(engine, ORIGIN, clock=clock)
    await audit.start()
    yield audit
    await audit.close()


def quiet(clock: FakeClock) -> None:
    """Longer than INLINE_QUIET_S passes: the next append is not part of a burst."""
    clock.advance(0.01)


@on_a_sqlite_file
async def test_appends_to_an_idle_log_commit_on_the_callers_thread(
    log: AuditLog, engine: Engine, writers: list[str], clock: FakeClock
) -> None:
    for i in range(3):
        quiet(clock)
        assert await log.append(record(i)) == [i]
    assert writers == [threading.current_thread().name] * 3
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_a_burst_of_appends_is_group_committed_by_the_writer_thread(
    log: AuditLog, engine: Engine, writers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer thread is held in its first commit until the whole burst is queued,
    # so how the burst is batched does not depend on how the threads are scheduled.
    release = threading.Event()
    real_write = Appender.write

    def held(self: Appender, groups: Any, earlier: Any = ()) -> list[list[int]]:
        if threading.current_thread().name == "audit-writer":
            release.wait(60)
        return real_write(self, groups, earlier)

    monkeypatch.setattr(Appender, "write", held)
    burst = asyncio.gather(*(log.append(record(i)) for i in range(40)))
    await asyncio.sleep(0)  # a yield, not a pause: every append of the burst runs to its queue
    release.set()
    results = await burst
    assert sorted(seq for [seq] in results) == list(range(40))
    # The first, finding the log idle, commits inline; the rest arrive no time later,
    # so they queue, and share the writer's held transaction and the one after it.
    assert writers[0] == threading.current_thread().name
    assert writers[1:] in (["audit-writer"], ["audit-writer"] * 2), writers
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_an_append_never_overtakes_one_queued_before_it(
    log: AuditLog,
    engine: Engine,
    writers: list[str],
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
) -> None:
    # The writer thread is held inside its commit of the queued record.
    release = threading.Event()
    real_write = Appender.write

    def held(self: Appender, groups: Any, earlier: Any = ()) -> list[list[int]]:
        if threading.current_thread().name == "audit-writer":
            release.wait(10)
        return real_write(self, groups, earlier)

    monkeypatch.setattr(Appender, "write", held)
    quiet(clock)
    assert await log.append(record(0)) == [0]  # idle: inline
    queued = asyncio.create_task(log.append(record(1)))  # no time later: the writer's
    await asyncio.sleep(0)  # a yield: it queues, and the writer holds it
    quiet(clock)  # quiet long enough to go inline, were nothing queued
    appending = asyncio.create_task(log.append(record(2)))
    await asyncio.sleep(0)  # a yield: the task runs until it waits (an inline append ends)
    assert not appending.done()  # it queued behind record 1 instead of committing
    release.set()
    [first], [second] = await queued, await appending
    assert (first, second) == (1, 2)
    assert [e.payload["i"] for e in read_entries(engine) if e.payload] == [0, 1, 2]


@on_a_sqlite_file
async def test_a_submitted_record_is_written_in_front_of_the_next_append(
    log: AuditLog, engine: Engine, writers: list[str], clock: FakeClock
) -> None:
    # An outcome nobody waits for costs no commit of its own: the next append, inline
    # here, writes it first in its own transaction (docs/decisions/0026).
    quiet(clock)
    submitted = log.submit(record(0))
    quiet(clock)
    assert await log.append(record(1)) == [1]
    assert await submitted == [0]
    assert writers == [threading.current_thread().name]  # one transaction for both
    assert [e.payload["i"] for e in read_entries(engine) if e.payload] == [0, 1]


@on_a_sqlite_file
async def test_a_submitted_record_with_no_append_after_it_is_written_alone(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    # Its future resolves once the record is committed by the writer thread, at the
    # latest LINGER_S after it was submitted (the loop's timer; nothing is awaited but
    # the commit itself).
    assert await log.submit(record(0), record(1)) == [0, 1]
    assert writers == ["audit-writer"]


@on_a_sqlite_file
async def test_close_writes_what_is_still_lingering(engine: Engine, clock: FakeClock) -> None:
    audit = AuditLog(engine, ORIGIN, clock=clock)
    await audit.start()
    submitted = audit.submit(record(0))
    await audit.close()
    assert await submitted == [0]
    assert [e.payload["i"] for e in read_entries(engine) if e.payload] == [0]


@on_a_sqlite_file
async def test_a_failed_inline_commit_appends_nothing_and_the_log_goes_on(
    log: AuditLog, engine: Engine, writers: list[str], clock: FakeClock
) -> None:
    quiet(clock)
    assert await log.append(record(0)) == [0]
    sabotage_commits(engine)
    quiet(clock)
    with pytest.raises(AuditUnavailable, match="none of them was appended"):
        await log.append(record(1), record(2))
    assert len(read_entries(engine)) == 1
    repair_commits(engine)
    quiet(clock)
    assert await log.append(record(3)) == [1]
    assert writers[-1] == threading.current_thread().name
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_an_inline_append_never_waits_for_another_process(
    log: AuditLog,
    engine: Engine,
    database_url: str,
    writers: list[str],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gave_up: list[str] = []  # the threads whose write found the database busy
    real_write = Appender.write

    def write(self: Appender, groups: Any, earlier: Any = ()) -> list[list[int]]:
        try:
            return real_write(self, groups, earlier)
        except WriterBusy:
            gave_up.append(threading.current_thread().name)
            raise

    monkeypatch.setattr(Appender, "write", write)
    quiet(clock)
    assert await log.append(record(0)) == [0]
    # Another process's writer (another connection) holds the database.
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        quiet(clock)
        appending = asyncio.create_task(log.append(record(1)))
        await asyncio.sleep(0)  # a yield: the task tries inline, then waits in the queue
        # The attempt on the loop found the database busy and handed the append to the
        # writer thread, which waits for the lock (busy timeout) off the loop.
        assert gave_up == [threading.current_thread().name]
        assert not appending.done()
        # It gave up at once rather than after SQLite's busy timeout: its connection
        # has none. (How long it took is not something to assert on a busy machine.)
        assert log._inline is not None
        assert log._inline._kept.dbapi().execute("PRAGMA busy_timeout").fetchone() == (0,)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await appending == [1]
    assert writers[-1] == "audit-writer"
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_a_slow_commit_moves_appends_to_the_writer_thread_until_commits_are_fast(
    log: AuditLog,
    engine: Engine,
    writers: list[str],
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
) -> None:
    real_write = Appender.write
    slow = [True]

    def first_one_slow(self: Appender, groups: Any, earlier: Any = ()) -> list[list[int]]:
        if slow and threading.current_thread().name != "audit-writer":
            slow.clear()
            clock.advance(0.05)  # a disk that stalled once: 25 times the budget
        return real_write(self, groups, earlier)

    monkeypatch.setattr(Appender, "write", first_one_slow)
    for i in range(30):
        quiet(clock)
        await log.append(record(i))
    caller = threading.current_thread().name
    assert writers[0] == caller  # the slow one
    # Then the writer thread's commits (taking no time) bring the average down, and
    # inline resumes for good: one run of each, in that order.
    moved = writers.index(caller, 1) - 1
    assert moved >= 1, writers
    assert writers == [caller] + ["audit-writer"] * moved + [caller] * (29 - moved), writers


class _WriterBug(BaseException):
    pass


@on_a_sqlite_file
async def test_close_returns_every_connection_even_after_the_writer_died(
    engine: Engine, writers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = AuditLog(engine, ORIGIN, clock=FakeClock())
    await audit.start()
    await audit.append(record(0))  # inline: the never-waiting connection is in use
    real_write = Appender.write

    def dies_in_the_writer(self: Appender, groups: Any, earlier: Any = ()) -> list[list[int]]:
        if threading.current_thread().name == "audit-writer":
            raise _WriterBug("simulated bug")
        return real_write(self, groups, earlier)

    monkeypatch.setattr(Appender, "write", dies_in_the_writer)
    with pytest.raises(AuditUnavailable, match="internal error"):
        await audit.submit(record(1))
    await audit.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # Nothing of the never-waiting connection's settings reached the pool.
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS


async def test_an_in_memory_database_is_written_by_the_writer_thread_only(
    writers: list[str],
) -> None:
    engine = create_engine("sqlite://")
    migrate(engine)
    clock = FakeClock()
    audit = AuditLog(engine, ORIGIN, clock=clock)
    await audit.start()
    for i in range(3):
        quiet(clock)
        await audit.append(record(i))
    await audit.close()
    engine.dispose()
    assert writers == ["audit-writer"] * 3
