"""AuditLog on a real database (SQLite file and PostgreSQL): concurrency, durability
of acknowledged appends, failure without partial appends, lifecycle."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.audit import (
    AuditLog,
    AuditRecord,
    ChainError,
    chain_head,
    iter_entries,
    parse_leaf,
    read_entries,
    tail,
    verify_chain,
)
from gateway.audit.batch import ROWS_PER_INSERT
from gateway.errors import AuditUnavailable, ConfigError
from gateway.store import create_engine, migrate
from tests.support.audit_faults import (
    kill_connections_at_commit,
    repair_commits,
    sabotage_commits,
    stop_killing_connections,
)
from tests.support.fault_proxy import fault_proxy

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/audit"


def record(i: int, kind: str = "call.attempt", **payload: object) -> AuditRecord:
    return AuditRecord(kind=kind, ref=f"req-{i}", payload={"i": i, **payload})


@pytest.fixture
async def log(engine: Engine) -> AsyncIterator[AuditLog]:
    audit = AuditLog(engine, ORIGIN, max_batch=64)
    await audit.start()
    yield audit
    await audit.close()


async def test_concurrent_appends_form_one_contiguous_verifying_chain(
    log: AuditLog, engine: Engine
) -> None:
    tasks, rounds = 64, 8

    async def producer(t: int) -> list[list[int]]:
        got = []
        for r in range(rounds):
            # Every third call appends several records, which must stay together.
            n = 3 if r % 3 == 0 else 1
            got.append(await log.append(*(record(t * 100 + r, part=k) for k in range(n))))
        return got

    results = await asyncio.gather(*(producer(t) for t in range(tasks)))
    calls = [seqs for per_task in results for seqs in per_task]
    all_seqs = sorted(s for seqs in calls for s in seqs)
    assert all_seqs == list(range(len(all_seqs)))
    for seqs in calls:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    verify_chain(iter_entries(engine, page_size=100), ORIGIN)
    # Each caller got the seqs of its own records.
    entries = {e.seq: e for e in read_entries(engine)}
    for t, per_task in enumerate(results):
        for r, seqs in enumerate(per_task):
            assert [entries[s].payload["i"] for s in seqs] == [t * 100 + r] * len(seqs)


async def test_acknowledged_append_is_visible_to_another_connection(
    log: AuditLog, database_url: str
) -> None:
    [seq] = await log.append(record(1))
    other = create_engine(database_url)
    try:
        [entry] = read_entries(other, start=seq, stop=seq + 1)
    finally:
        other.dispose()
    assert entry.payload == {"i": 1}


async def test_entries_round_trip(log: AuditLog, engine: Engine) -> None:
    payload = {"principal": {"sub": "agent:a"}, "arguments": {"q": "ü", "n": 1.5}}
    await log.append(
        AuditRecord("call.attempt", "req-9", payload, subject="agent:a", tool="gh__issue"),
        AuditRecord("call.decision", "req-9", {"allow": True}),
    )
    first, second = read_entries(engine)
    assert (first.seq, first.kind, first.ref) == (0, "call.attempt", "req-9")
    assert first.payload == payload
    assert (first.subject, first.tool) == ("agent:a", "gh__issue")
    assert (second.subject, second.tool) == (None, None)
    assert len(first.salt or b"") == 32 and first.salt != second.salt
    leaf = parse_leaf(first.leaf)
    assert (leaf.log, leaf.seq, leaf.ts) == (ORIGIN, 0, first.ts)
    assert first.ts.endswith("Z") and first.ts <= second.ts
    head = chain_head(engine)
    assert head is not None and (head.size, head.leaf_hash) == (2, second.leaf_hash)


async def test_a_batch_of_more_rows_than_one_statement_takes_is_appended_whole(
    engine: Engine,
) -> None:
    # The writer inserts a batch's rows in multi-row statements of at most
    # ROWS_PER_INSERT rows: one group spanning several, and ones of odd sizes after it.
    sizes = [2 * ROWS_PER_INSERT + 3, 1, ROWS_PER_INSERT, 5]
    audit = AuditLog(engine, ORIGIN, max_batch=sum(sizes))
    await audit.start()
    try:
        groups = [[record(1000 * j + i) for i in range(n)] for j, n in enumerate(sizes)]
        seqs = await asyncio.gather(*(audit.append(*group) for group in groups))
    finally:
        await audit.close()
    entries = read_entries(engine)
    assert [e.seq for e in entries] == list(range(sum(sizes)))
    by_seq = {e.seq: e for e in entries}
    for group, placed in zip(groups, seqs, strict=True):
        assert placed == list(range(placed[0], placed[0] + len(group)))
        assert [by_seq[s].payload for s in placed] == [r.payload for r in group]
        assert [by_seq[s].ref for s in placed] == [r.ref for r in group]
    verify_chain(iter_entries(engine), ORIGIN)


async def test_failed_commit_appends_nothing_and_the_chain_continues(
    log: AuditLog, engine: Engine
) -> None:
    await log.append(record(0), record(1))
    sabotage_commits(engine)
    # Several callers, likely sharing one batch: all of them fail, none is appended.
    outcomes = await asyncio.gather(
        *(log.append(record(i), record(i + 100)) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, AuditUnavailable) for o in outcomes), outcomes
    error = outcomes[0]
    assert isinstance(error, AuditUnavailable)
    assert "none of them was appended" in error.message
    assert "foreign key" in error.message.lower()  # the cause, at COMMIT time
    assert error.code == "audit_unavailable" and error.http_status == 503
    assert len(read_entries(engine)) == 2

    repair_commits(engine)
    assert await log.append(record(2)) == [2]
    verify_chain(read_entries(engine), ORIGIN)


async def test_close_writes_everything_already_queued(engine: Engine) -> None:
    audit = AuditLog(engine, ORIGIN, max_batch=16)
    await audit.start()
    pending = [asyncio.create_task(audit.append(record(i))) for i in range(200)]
    await asyncio.sleep(0)  # let every task enqueue its append
    await audit.close()
    seqs = sorted(s for task in pending for s in task.result())
    assert seqs == list(range(200))
    with pytest.raises(AuditUnavailable, match="not running"):
        await audit.append(record(999))
    verify_chain(read_entries(engine), ORIGIN)


async def test_append_before_start_is_refused(engine: Engine) -> None:
    with pytest.raises(AuditUnavailable, match="not running"):
        await AuditLog(engine, ORIGIN).append(record(1))
    assert read_entries(engine) == []


async def test_start_twice_is_a_programming_error(log: AuditLog) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        await log.start()


async def test_invalid_record_fails_only_its_caller(log: AuditLog, engine: Engine) -> None:
    bad = AuditRecord("call.attempt", "r", {"x": float("nan")})
    good, failed = await asyncio.gather(
        log.append(record(1)), log.append(bad), return_exceptions=True
    )
    assert good == [0]
    assert isinstance(failed, ValueError)
    for wrong in [
        AuditRecord("Call Attempt", "r", {}),
        AuditRecord("call.attempt", 5, {}),  # type: ignore[arg-type]
        AuditRecord("call.attempt", "r", []),  # type: ignore[arg-type]
        AuditRecord("call.attempt", "r", {}, subject=1),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ValueError):
            await log.append(wrong)
    with pytest.raises(TypeError):
        await log.append({"kind": "call.attempt"})  # type: ignore[arg-type]
    assert len(read_entries(engine)) == 1


async def test_empty_append_is_a_no_op(log: AuditLog, engine: Engine) -> None:
    assert await log.append() == []
    assert log.append_sync() == []
    assert chain_head(engine) is None


async def test_append_sync_uses_the_running_writer_from_other_threads(
    log: AuditLog, engine: Engine
) -> None:
    results: list[list[int]] = []

    def worker(base: int) -> None:
        for i in range(20):
            results.append(log.append_sync(record(base + i)))

    threads = [threading.Thread(target=worker, args=(b * 100,)) for b in range(4)]
    for t in threads:
        t.start()
    await asyncio.gather(*(log.append(record(1000 + i)) for i in range(40)))
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    assert len({s for r in results for s in r}) == 80
    verify_chain(read_entries(engine), ORIGIN)
    assert len(read_entries(engine)) == 120


async def test_a_submitted_record_whose_commit_failed_is_kept_until_it_commits(
    log: AuditLog, engine: Engine
) -> None:
    """An outcome submitted while the database refuses every commit is not dropped: it
    rides again (in front) with the next append once commits succeed, exactly once."""
    await log.append(record(0))
    sabotage_commits(engine)
    submitted = log.submit(record(1, kind="call.outcome"))
    with pytest.raises(AuditUnavailable, match="none of them was appended"):
        await log.append(record(2))  # the outcome rode in this failed batch, or alone
    assert not submitted.done()  # kept, not failed
    repair_commits(engine)
    assert await log.append(record(3)) == [2]
    assert await submitted == [1]
    assert [(e.kind, e.ref) for e in read_entries(engine)] == [
        ("call.attempt", "req-0"),
        ("call.outcome", "req-1"),
        ("call.attempt", "req-3"),
    ]
    verify_chain(read_entries(engine), ORIGIN)


async def test_a_kept_record_is_written_alone_when_no_append_comes(
    log: AuditLog, engine: Engine
) -> None:
    sabotage_commits(engine)
    submitted = log.submit(record(1, kind="call.outcome"))
    with pytest.raises(AuditUnavailable):
        await log.append(record(2))
    repair_commits(engine)
    assert await asyncio.wait_for(submitted, 60) == [0]  # its retry timer, no append
    assert [e.ref for e in read_entries(engine)] == ["req-1"]


async def test_a_kept_record_is_given_up_on_close_if_the_database_is_still_away(
    engine: Engine,
) -> None:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()
    sabotage_commits(engine)
    submitted = audit.submit(record(1, kind="call.outcome"))
    with pytest.raises(AuditUnavailable):
        await audit.append(record(2))
    await audit.close()
    with pytest.raises(AuditUnavailable):
        await submitted
    repair_commits(engine)
    assert read_entries(engine) == []


def test_append_sync_without_a_writer_thread(engine: Engine) -> None:
    audit = AuditLog(engine, ORIGIN)
    assert audit.append_sync(record(1), record(2)) == [0, 1]
    assert audit.append_sync(record(3)) == [2]
    verify_chain(read_entries(engine), ORIGIN)


def test_append_sync_without_a_writer_thread_reports_failure(engine: Engine) -> None:
    sabotage_commits(engine)
    with pytest.raises(AuditUnavailable, match="none of them was appended"):
        AuditLog(engine, ORIGIN).append_sync(record(1))
    repair_commits(engine)
    assert read_entries(engine) == []


async def test_start_refuses_a_database_of_another_log(engine: Engine) -> None:
    AuditLog(engine, "other/log").append_sync(record(1))
    with pytest.raises(ConfigError, match="origin 'other/log'"):
        await AuditLog(engine, ORIGIN).start()
    with pytest.raises(ConfigError, match="origin 'other/log'"):
        AuditLog(engine, ORIGIN).append_sync(record(2))
    assert len(read_entries(engine)) == 1


async def test_start_refuses_an_unmigrated_database(database_url: str) -> None:
    bare = create_engine(database_url)
    try:
        with pytest.raises(AuditUnavailable, match="migrated"):
            await AuditLog(bare, ORIGIN).start()
    finally:
        bare.dispose()


def test_origin_must_be_one_printable_line(engine: Engine) -> None:
    for origin in ["", " padded", "two\nlines"]:
        with pytest.raises(ConfigError):
            AuditLog(engine, origin)


async def test_reader_filters_and_tail(log: AuditLog, engine: Engine) -> None:
    for i in range(10):
        kind = "call.decision" if i % 2 else "call.attempt"
        await log.append(
            AuditRecord(kind, f"req-{i % 3}", {"i": i}, subject=f"agent:{i % 2}", tool=f"t{i % 5}")
        )
    assert [e.seq for e in read_entries(engine, kind="call.decision")] == [1, 3, 5, 7, 9]
    assert [e.seq for e in read_entries(engine, ref="req-1")] == [1, 4, 7]
    assert [e.seq for e in read_entries(engine, subject="agent:0", tool="t0")] == [0]
    assert [e.seq for e in read_entries(engine, start=3, stop=6)] == [3, 4, 5]
    assert [e.seq for e in read_entries(engine, start=2, limit=2)] == [2, 3]
    assert [e.seq for e in tail(engine, 3)] == [7, 8, 9]
    assert [e.seq for e in tail(engine, 2, kind="call.attempt")] == [6, 8]
    assert tail(engine, 0) == []
    assert [e.seq for e in iter_entries(engine, start=4, stop=9, page_size=2)] == [4, 5, 6, 7, 8]


async def test_erased_payload_reads_as_none_and_needs_an_erasure_entry(
    log: AuditLog, engine: Engine
) -> None:
    await log.append(record(0), record(1), record(2))
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_payloads WHERE seq = 1")
    entry = read_entries(engine, start=1, stop=2)[0]
    assert (entry.payload, entry.salt, entry.subject) == (None, None, None)
    with pytest.raises(ChainError, match="no erasure entry") as caught:
        verify_chain(read_entries(engine), ORIGIN)
    assert caught.value.seq == 1
    await log.append(AuditRecord("erasure", "erasure-1", {"seq": 1}))
    verify_chain(read_entries(engine), ORIGIN)


async def test_cancelled_caller_does_not_disturb_the_writer(log: AuditLog, engine: Engine) -> None:
    waiting = asyncio.create_task(log.append(record(1)))
    await asyncio.sleep(0)
    waiting.cancel()
    # The cancelled record may or may not have been committed; later appends work and
    # the chain stays whole either way.
    [seq] = await log.append(record(2))
    assert seq in (0, 1)
    verify_chain(read_entries(engine), ORIGIN)


class _WriterBug(BaseException):
    pass


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_dead_writer_thread_fails_callers_instead_of_hanging(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = AuditLog(engine, ORIGIN)
    await audit.start()

    def broken(*args: object) -> None:
        raise _WriterBug("simulated bug")

    audit._budget.record(1.0)  # recent commits slow: the thread writes
    monkeypatch.setattr("gateway.audit.appender.Appender.write", broken)
    with pytest.raises(AuditUnavailable, match="internal error"):
        await asyncio.wait_for(audit.append(record(1)), timeout=10)
    with pytest.raises(AuditUnavailable, match="internal error"):
        await audit.append(record(2))
    with pytest.raises(AuditUnavailable, match="internal error"):
        audit.append_sync(record(3))
    await audit.close()
    assert read_entries(engine) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_appends_survive_dropped_connections(
    log: AuditLog, engine: Engine, database_url: str
) -> None:
    await log.append(record(0))
    # What a database restart or failover does to pooled connections.
    admin = create_engine(database_url)
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
    finally:
        admin.dispose()
    assert killed >= 1
    assert await log.append(record(1)) == [1]
    verify_chain(read_entries(engine), ORIGIN)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_connection_lost_during_commit_is_never_retried(
    log: AuditLog, engine: Engine
) -> None:
    await log.append(record(0))
    kill_connections_at_commit(engine)
    with pytest.raises(AuditUnavailable, match="may or may not be in the log"):
        await log.append(record(1))
    stop_killing_connections(engine)
    # Sent once, never again: whatever the server did with it, it is in the log at most
    # once, and the chain goes on from there.
    [seq] = await log.append(record(2))
    entries = read_entries(engine)
    assert [e.payload["i"] for e in entries if e.payload] in ([0, 2], [0, 1, 2])
    assert seq == len(entries) - 1
    verify_chain(entries, ORIGIN)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_submitted_record_in_a_commit_the_database_did_not_keep_is_written_later(
    log: AuditLog, engine: Engine
) -> None:
    """The connection dies during COMMIT and the database rolls the transaction back:
    the outcome that rode in it is kept, looked for where that transaction put it (not
    there), and appended once the database commits again."""
    await log.append(record(0))
    kill_connections_at_commit(engine)
    submitted = log.submit(record(1, kind="call.outcome"))
    with pytest.raises(AuditUnavailable, match="may or may not be in the log"):
        await log.append(record(2))  # the outcome rides in front, in the same batch
    assert not submitted.done()  # kept, not given up
    stop_killing_connections(engine)
    assert await log.append(record(3)) == [2]
    assert await submitted == [1]
    entries = read_entries(engine)
    assert [(e.kind, e.ref) for e in entries] == [
        ("call.attempt", "req-0"),
        ("call.outcome", "req-1"),
        ("call.attempt", "req-3"),
    ]
    verify_chain(entries, ORIGIN)


@pytest.mark.postgres
async def test_a_submitted_record_in_a_commit_whose_answer_was_lost_is_not_written_twice(
    pg_database_url: str,
) -> None:
    """The database commits, and its answer never reaches the gateway (the connection
    is cut at that moment, as by a crash or a network fault): the kept outcome is found
    where that transaction put it, so it is in the log once, with those seqs."""
    reset = create_engine(pg_database_url)
    with reset.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    migrate(reset)
    reset.dispose()
    port = sa.make_url(pg_database_url).port
    assert port is not None
    with fault_proxy(port) as proxy:
        # In clear, so the proxy can see the COMMIT go by.
        url = sa.make_url(pg_database_url).set(port=proxy.port)
        url = url.update_query_dict({"sslmode": "disable"})
        engine = create_engine(url.render_as_string(hide_password=False))
        audit = AuditLog(engine, ORIGIN)
        await audit.start()
        try:
            await audit.append(record(0))
            proxy.cut_reply_after(b"COMMIT\x00")
            submitted = audit.submit(record(1, kind="call.outcome"))
            with pytest.raises(AuditUnavailable, match="may or may not be in the log"):
                await audit.append(record(2))  # committed, but nobody heard so
            assert proxy.cuts == 1
            assert not submitted.done()
            assert await audit.append(record(3)) == [3]  # after the cut-off two
            assert await submitted == [1]
        finally:
            await audit.close()
        entries = read_entries(engine)
        engine.dispose()
    assert [(e.kind, e.ref) for e in entries] == [
        ("call.attempt", "req-0"),
        ("call.outcome", "req-1"),
        ("call.attempt", "req-2"),
        ("call.attempt", "req-3"),
    ]
    verify_chain(entries, ORIGIN)
