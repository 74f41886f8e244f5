"""The fenced progress writes (gateway.executor.progress) on SQLite and PostgreSQL: a
step's result carried by the next write, the known-attempt fast path, the fence, and
the doorbell that starts a run submitted in this process without waiting for a poll."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from gateway.executor import progress
from gateway.executor.errors import LeaseLost, only_lease_lost
from gateway.executor.store import Claim, RunStore, StepFinish
from gateway.executor.worker import Worker
from gateway.store import create_engine, migrate
from gateway.store.tables import run_steps, runs, step_attempts
from tests.integration.executor.harness import executor_parts
from tests.support.clock import FakeClock
from tests.support.processes import McpUpstreamServer
from tests.support.waiting import eventually_async


@pytest.fixture
def clock() -> FakeClock:
    """The store's clock for its inline budget: writes take no time unless a test says."""
    return FakeClock()


@pytest.fixture
def store(database_url: str, clock: FakeClock) -> Iterator[RunStore]:
    engine = create_engine(database_url)
    migrate(engine)
    store = RunStore(engine, clock=clock)
    yield store
    store.close()
    engine.dispose()


def _run(store: RunStore, steps: list[str]) -> Claim:
    with store.write(durable=True) as conn:
        conn.execute(
            sa.insert(runs).values(
                id="run_t",
                status="pending",
                plan={},
                plan_hash="h",
                inputs={},
                principal={},
                submitted_by="agent:t",
                owner="https://issuer.test\nagent:t",
                idempotency_key="k",
                provenance={},
                created_at=store.now,
                updated_at=store.now,
                fencing_token=0,
                cancel_requested=False,
                tool_calls=0,
                max_tool_calls=10,
            )
        )
        conn.execute(
            sa.insert(run_steps),
            [
                {
                    "run_id": "run_t",
                    "step_id": step,
                    "kind": "tool",
                    "status": "pending",
                    "attempts": 0,
                    "failures": 0,
                    "idempotency_key": f"run_t:{step}",
                }
                for step in steps
            ],
        )
    claim = store.claim("worker-a", 30)
    assert claim is not None
    return claim


def _rows(store: RunStore) -> tuple[dict[str, Any], list[Any]]:
    with store.engine.connect() as conn:
        steps = {r.step_id: r for r in conn.execute(sa.select(run_steps))}
        attempts = list(
            conn.execute(
                sa.select(step_attempts).order_by(step_attempts.c.step_id, step_attempts.c.attempt)
            )
        )
    return steps, attempts


def _succeeded(step: str, attempt: int) -> StepFinish:
    values = {"status": "succeeded", "output": {"n": attempt}, "error": None}
    return StepFinish(step, "step", attempt, "ok", None, values)


def test_a_result_is_written_with_the_next_steps_start(store: RunStore) -> None:
    claim = _run(store, ["a", "b"])
    first, calls, cap = progress.begin_attempt(
        store, claim, "a", "step", "req_1", "k:a", previous=0
    )
    assert (first, calls, cap) == (1, 1, 10)
    second, calls, _ = progress.begin_attempt(
        store, claim, "b", "step", "req_2", "k:b", previous=0, finishes=[_succeeded("a", first)]
    )
    assert (second, calls) == (1, 2)
    steps, attempts = _rows(store)
    assert steps["a"].status == "succeeded" and steps["a"].output == {"n": 1}
    assert steps["a"].finished_at is not None
    assert steps["b"].status == "running" and steps["b"].attempts == 1
    assert [(a.step_id, a.status) for a in attempts] == [("a", "ok"), ("b", "running")]


def test_an_unknown_last_attempt_is_looked_up_and_abandoned(store: RunStore) -> None:
    claim = _run(store, ["a"])
    progress.begin_attempt(store, claim, "a", "step", "req_1", "k:a", previous=0)
    # Another worker takes over: it read "a" as running, so it does not know whether
    # an attempt is still open.
    with store.write() as conn:
        conn.execute(sa.update(runs).values(lease_expires_at=0))
    takeover = store.claim("worker-b", 30)
    assert takeover is not None and takeover.token == claim.token + 1
    attempt, _, _ = progress.begin_attempt(store, takeover, "a", "step", "req_2", "k:a")
    assert attempt == 2
    _, attempts = _rows(store)
    assert [(a.attempt, a.status, a.worker) for a in attempts] == [
        (1, "abandoned", "worker-a"),
        (2, "running", "worker-b"),
    ]


def test_a_stale_token_writes_nothing_not_even_carried_results(store: RunStore) -> None:
    claim = _run(store, ["a", "b"])
    progress.begin_attempt(store, claim, "a", "step", "req_1", "k:a", previous=0)
    with store.write() as conn:
        conn.execute(sa.update(runs).values(fencing_token=runs.c.fencing_token + 1))
    with pytest.raises(LeaseLost):
        progress.begin_attempt(
            store, claim, "b", "step", "req_2", "k:b", previous=0, finishes=[_succeeded("a", 1)]
        )
    with pytest.raises(LeaseLost):
        progress.record(store, claim, [_succeeded("a", 1)])
    steps, attempts = _rows(store)
    assert steps["a"].status == "running" and steps["b"].status == "pending"
    assert [(a.step_id, a.status) for a in attempts] == [("a", "running")]


def test_a_retry_backoff_returns_its_wake_time_on_the_database_clock(store: RunStore) -> None:
    claim = _run(store, ["a"])
    progress.begin_attempt(store, claim, "a", "step", "req_1", "k:a", previous=0)
    failed = StepFinish("a", "step", 1, "tool_error", {"code": "tool_error"}, {"status": "waiting"})
    before = store.clock()
    wake_at = progress.finish_attempt(store, claim, failed, 30.0)
    after = store.clock()
    assert wake_at is not None and before + 30 <= wake_at <= after + 30
    steps, attempts = _rows(store)
    assert steps["a"].status == "waiting" and steps["a"].finished_at is None
    assert attempts[0].status == "tool_error" and attempts[0].error == {"code": "tool_error"}


def test_an_inline_write_never_waits_for_the_database(store: RunStore, clock: FakeClock) -> None:
    claim = _run(store, ["a", "b"])
    progress.begin_attempt(store, claim, "a", "step", "req_1", "k:a", previous=0)
    if not store.dialect.writes_inline(store.engine):  # over the network: from a thread
        assert store.inline(progress.record, store, claim, [_succeeded("a", 1)]) == (False, None)
        return
    # Another process writing (a connection of its own, outside this process's lock).
    other = sqlite3.connect(store.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    assert store.inline(progress.record, store, claim, [_succeeded("a", 1)]) == (False, None)
    # It gave up at once rather than after SQLite's busy timeout: the connections of
    # writes on the event loop have none. (How long it took is not something to
    # assert on a busy machine.)
    assert store._inline is not None
    with store._inline.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0
    other.execute("ROLLBACK")
    other.close()
    assert _rows(store)[0]["a"].status == "running"  # nothing written
    # Free again: written where it was asked.
    assert store.inline(progress.record, store, claim, [_succeeded("a", 1)]) == (True, None)
    assert _rows(store)[0]["a"].status == "succeeded"
    # Recent writes slow (contention, a slow disk): back to threads.
    store.timed(clock.advance, 1.0)
    assert store.inline(progress.record, store, claim, []) == (False, None)


def test_lease_lost_is_recognised_inside_task_group_errors() -> None:
    lost = LeaseLost("run r: fencing token 1 is no longer current")
    assert only_lease_lost(lost) is lost
    assert only_lease_lost(BaseExceptionGroup("outer", [ExceptionGroup("inner", [lost])])) is lost
    assert only_lease_lost(ExceptionGroup("both", [lost, ValueError("other")])) is None
    assert only_lease_lost(ValueError("other")) is None


@pytest.mark.anyio
async def test_a_run_submitted_here_starts_without_waiting_for_a_poll(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = McpUpstreamServer.start(tmp_path)
    try:
        async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
            # One worker whose poll never comes (longer than configuration allows, so
            # the copy skips validation): only the doorbell can start a run.
            deps = parts.executor.deps
            never_polls = replace(deps, config=deps.config.model_copy(update={"poll_s": 3600}))
            looks: list[object] = []
            claim = deps.store.claim

            def counted(*args: Any) -> Any:
                looks.append(found := claim(*args))
                return found

            monkeypatch.setattr(deps.store, "claim", counted)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(Worker(never_polls, "w-bell").run_forever)
                # It found nothing and is (about to be) asleep: its doorbell is taken.
                await eventually_async(lambda: looks == [None], "the worker's first look")
                run_id = await parts.submit(
                    {"steps": [{"id": "a", "tool": "up__echo", "arguments": {"text": "hi"}}]}
                )
                view = await parts.wait(run_id)
                assert view["status"] == "succeeded"
                found = looks[1]  # the look the bell started found the run
                assert isinstance(found, Claim) and found.run_id == run_id
                tasks.cancel_scope.cancel()
    finally:
        upstream.process.stop()
