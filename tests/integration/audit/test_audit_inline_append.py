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

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

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


async def test_appends_to_an_idle_log_commit_on_the_callers_thread(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    for i in range(3):
        await quiet()
        assert await log.append(record(i)) == [i]
    assert writers == [threading.current_thread().name] * 3
    verify_chain(read_entries(engine), ORIGIN)


async def test_a_burst_of_appends_is_group_committed_by_the_writer_thread(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    results = await asyncio.gather(*(log.append(record(i)) for i in range(40)))
    assert sorted(seq for [seq] in results) == list(range(40))
    # The first may go inline; the rest arrive together and share a few transactions.
    assert "audit-writer" in writers
    assert len(writers) < 20, writers
    verify_chain(read_entries(engine), ORIGIN)


async def test_an_append_after_a_queued_one_is_appended_after_it(
    log: AuditLog, engine: Engine, writers: list[str]
) -> None:
    await quiet()
    queued = log.submit(record(0))  # not awaited, as the pipeline submits outcomes
    await quiet()  # long enough to be "quiet", typically before the writer committed
    [second] = await log.append(record(1))
    [first] = await queued
    assert first < second
    assert [e.payload["i"] for e in read_entries(engine) if e.payload] == [0, 1]


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


async def test_appends_go_to_the_writer_thread_while_inline_commits_are_slow(
    log: AuditLog, engine: Engine, writers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.audit.sequencer.INLINE_BUDGET_S", 0.0)
    for i in range(3):
        await quiet()
        await log.append(record(i))
    assert writers == ["audit-writer"] * 3
