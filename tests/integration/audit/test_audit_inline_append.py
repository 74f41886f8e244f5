"""AuditLog on a SQLite file: when an append commits on the caller's event loop instead
of the writer thread, and that doing so never stalls the loop or reorders the chain."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, read_entries, verify_chain
from gateway.audit.appender import Appender
from gateway.errors import AuditUnavailable
from gateway.store import create_engine, migrate
from gateway.store.dialect_sqlite import SQLITE_BUSY_TIMEOUT_MS
from tests.support.audit_faults import repair_commits, sabotage_commits

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

    def write(self: Appender, groups: Any) -> list[list[int]]:
        result = real_write(self, groups)
        names.append(threading.current_thread().name)
        return result

    monkeypatch.setattr(Appender, "write", write)
    yield names


@pytest.fixture
async def log(engine: Engine, writers: list[str]) -> AsyncIterator[AuditLog]:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    yield audit
    await audit.close()


async def quiet() -> None:
    """Longer than INLINE_QUIET_S: the next append is not part of a burst."""
    await asyncio.sleep(0.01)


@on_a_sqlite_file
async def test_appends_to_an_idle_log_commit_on_the_callers_thread(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    for i in range(3):
        await quiet()
        assert await log.append(record(i)) == [i]
    assert writers == [threading.current_thread().name] * 3
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_a_burst_of_appends_is_group_committed_by_the_writer_thread(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    results = await asyncio.gather(*(log.append(record(i)) for i in range(40)))
    assert sorted(seq for [seq] in results) == list(range(40))
    # The first may go inline; the rest arrive together and share a few transactions.
    assert "audit-writer" in writers
    assert len(writers) < 20, writers
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_an_append_never_overtakes_one_queued_before_it(
    log: AuditLog, engine: Engine, writers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer thread is held inside its commit of the queued record.
    release = threading.Event()
    real_write = Appender.write

    def held(self: Appender, groups: Any) -> list[list[int]]:
        if threading.current_thread().name == "audit-writer":
            release.wait(10)
        return real_write(self, groups)

    monkeypatch.setattr(Appender, "write", held)
    await quiet()
    queued = log.submit(record(0))  # not awaited, as the pipeline submits outcomes
    await quiet()  # quiet long enough to go inline, were nothing queued
    appending = asyncio.create_task(log.append(record(1)))
    await asyncio.sleep(0.05)
    assert not appending.done()  # it queued behind record 0 instead of committing
    release.set()
    [first], [second] = await queued, await appending
    assert (first, second) == (0, 1)
    assert [e.payload["i"] for e in read_entries(engine) if e.payload] == [0, 1]


@on_a_sqlite_file
async def test_a_failed_inline_commit_appends_nothing_and_the_log_goes_on(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    await quiet()
    assert await log.append(record(0)) == [0]
    sabotage_commits(engine)
    await quiet()
    with pytest.raises(AuditUnavailable, match="none of them was appended"):
        await log.append(record(1), record(2))
    assert len(read_entries(engine)) == 1
    repair_commits(engine)
    await quiet()
    assert await log.append(record(3)) == [1]
    assert writers[-1] == threading.current_thread().name
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_an_inline_append_never_waits_for_another_process(
    log: AuditLog, engine: Engine, database_url: str, writers: list[str]
) -> None:
    await quiet()
    assert await log.append(record(0)) == [0]
    # Another process's writer (another connection) holds the database.
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        await quiet()
        appending = asyncio.create_task(log.append(record(1)))
        started = time.monotonic()
        await asyncio.sleep(0.05)
        # The event loop kept running: the append went to the writer thread, which
        # waits for the lock (busy timeout) while this loop sleeps on time.
        assert time.monotonic() - started < 1
        assert not appending.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await appending == [1]
    assert writers[-1] == "audit-writer"
    verify_chain(read_entries(engine), ORIGIN)


@on_a_sqlite_file
async def test_a_slow_commit_moves_appends_to_the_writer_thread_until_commits_are_fast(
    log: AuditLog, engine: Engine, writers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Appender.write
    slow = [True]

    def first_one_slow(self: Appender, groups: Any) -> list[list[int]]:
        if slow and threading.current_thread().name != "audit-writer":
            slow.clear()
            time.sleep(0.05)  # a disk that stalled once
        return real_write(self, groups)

    monkeypatch.setattr(Appender, "write", first_one_slow)
    for i in range(30):
        await quiet()
        await log.append(record(i))
    caller = threading.current_thread().name
    assert writers[0] == caller  # the slow one
    assert writers[1] == "audit-writer"  # then the writer thread's commits...
    assert writers[-1] == caller  # ...bring the average down, and inline resumes


class _WriterBug(BaseException):
    pass


@on_a_sqlite_file
async def test_close_returns_every_connection_even_after_the_writer_died(
    engine: Engine, writers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    await quiet()
    await audit.append(record(0))  # inline: the never-waiting connection is in use
    real_write = Appender.write

    def dies_in_the_writer(self: Appender, groups: Any) -> list[list[int]]:
        if threading.current_thread().name == "audit-writer":
            raise _WriterBug("simulated bug")
        return real_write(self, groups)

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
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    for i in range(3):
        await quiet()
        await audit.append(record(i))
    await audit.close()
    engine.dispose()
    assert writers == ["audit-writer"] * 3
