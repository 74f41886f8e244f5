"""Schedules fire, once per occurrence, across a crash and a restart, on SQLite and
PostgreSQL.

Cron has minute granularity and firing reads only the database clock, so instead of
waiting for minutes to pass the tests move a schedule's ``next_fire_at`` back to an
explicit minute boundary ("the gateway was down since then"), and a lease's expiry
into the past ("the worker holding it died a while ago"), and let the service do the
rest. What is checked is the contract in gateway/executor/schedules.py: every due
occurrence becomes exactly one run with the key ``schedule:<id>:<time>``, consecutive
and without gaps, and occurrences too old to fire are written to the audit log.

A new minute may begin while a test runs (the test cannot hold the database clock),
and then one more occurrence is legitimately due: counts are checked against the
database clock read before and after firing, never against a wall-clock margin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.audit import read_entries
from gateway.executor import schedules as schedules_module
from gateway.executor.schedules import MAX_CATCH_UP
from gateway.store.tables import runs, schedules
from gateway.timestamps import format_epoch
from tests.integration.executor.harness import AGENT, Parts, executor_parts
from tests.support.processes import McpUpstreamServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

PLAN = {"name": "tick", "steps": [{"id": "say", "tool": "up__echo", "arguments": {"text": "t"}}]}


class Crash(BaseException):
    """The process dying: not an `Exception`, so nothing on the way catches it."""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("sched-upstream"))
    yield server
    server.process.stop()


async def _add(parts: Parts, name: str = "every-minute") -> str:
    schedule = await parts.executor.schedules.add(
        AGENT, name=name, cron="* * * * *", plan=PLAN, request_id="req_test", transport="rest"
    )
    return str(schedule["id"])


async def _due_since(parts: Parts, schedule_id: str, minutes_ago: int) -> float:
    """Sets the schedule's next occurrence to a minute boundary ``minutes_ago`` minutes
    before the current one (database clock); returns that occurrence."""
    now = parts.store.clock()
    occurrence = now // 60 * 60 - 60 * minutes_ago
    with parts.store.write(durable=True) as conn:
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(next_fire_at=occurrence, lease_expires_at=None)
        )
    return occurrence


def _schedule(parts: Parts, schedule_id: str) -> Any:
    with parts.database.connect() as conn:
        return conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)).one()


def _fired(parts: Parts, schedule_id: str) -> list[Any]:
    """The schedule's runs, oldest occurrence first."""
    with parts.database.connect() as conn:
        rows = conn.execute(
            sa.select(runs.c.id, runs.c.idempotency_key).where(runs.c.schedule_id == schedule_id)
        ).all()
    return sorted(rows, key=lambda r: r.idempotency_key)


def _due(first: float, now: float) -> int:
    """How many every-minute occurrences from ``first`` are due at ``now``."""
    return int((now - first) // 60) + 1


def _lease_lapsed(parts: Parts, schedule_id: str) -> None:
    """The schedule's lease expired a moment ago (database clock)."""
    with parts.store.write(durable=True) as conn:
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(lease_expires_at=parts.store.now - 1)
        )


def _keys(schedule_id: str, first: float, end: float) -> list[str]:
    """The idempotency keys of every minute from ``first`` up to, not including, ``end``."""
    return [f"schedule:{schedule_id}:{format_epoch(t)}" for t in range(int(first), int(end), 60)]


def _check_each_occurrence_once(
    parts: Parts, schedule_id: str, first: float, caught_up_at: float
) -> list[Any]:
    """Every occurrence from ``first`` to the schedule's ``next_fire_at`` (exclusive)
    has exactly one run, and ``next_fire_at`` is after ``caught_up_at``, a database
    time before which a look for due schedules started and found this one not due."""
    row = _schedule(parts, schedule_id)
    assert row.next_fire_at > caught_up_at  # caught up
    fired = _fired(parts, schedule_id)
    assert [r.idempotency_key for r in fired] == _keys(schedule_id, first, row.next_fire_at)
    assert row.last_run_id == fired[-1].id
    assert row.lease_expires_at is None
    return fired


def _agreeing(
    parts: Parts, schedule_id: str, first: float, caught_up_at: float
) -> list[Any] | None:
    """`_check_each_occurrence_once`, or None while it does not hold."""
    try:
        return _check_each_occurrence_once(parts, schedule_id, first, caught_up_at)
    except AssertionError:
        return None


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """One item per look for a due schedule (`Schedules._lease_due`), by any worker."""
    seen: list[object] = []
    real = schedules_module.Schedules._lease_due

    def counted(self: schedules_module.Schedules) -> Any:
        row = real(self)
        seen.append(row)
        return row

    monkeypatch.setattr(schedules_module.Schedules, "_lease_due", counted)
    return seen


async def test_a_due_schedule_fires_and_its_run_runs(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer, looks: list[object]
) -> None:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=1) as parts:
        schedule_id = await _add(parts)
        assert _fired(parts, schedule_id) == []  # registering fires nothing
        occurrence = await _due_since(parts, schedule_id, 0)
        # The worker's idle loop fires it.
        [first, *_] = await eventually_async(lambda: _fired(parts, schedule_id), "a firing")
        run_id = first.id
        view = await parts.wait(run_id)
        assert view["status"] == "succeeded", view
        assert view["schedule_id"] == schedule_id
        assert view["steps"][0]["output"] == {"result": "t"}
        # Two more looks for due schedules by the worker, the last started after
        # `since`: nothing fires again.
        since, seen = parts.store.clock(), len(looks)
        await eventually_async(lambda: len(looks) >= seen + 2, "two more looks")
        # The clock is real and the worker runs on: as a minute begins it may be firing
        # that occurrence while this looks (its run made, the schedule not advanced
        # yet). So the schedule and its runs are read until they agree; a disagreement
        # that lasts (an occurrence fired twice or never) fails.
        fired = await eventually_async(
            lambda: _agreeing(parts, schedule_id, occurrence, since),
            "the schedule and its runs agreeing",
            detail=lambda: f"{_schedule(parts, schedule_id)} {_fired(parts, schedule_id)}",
        )
        assert fired[0].id == run_id
        submitted = [
            e for e in read_entries(parts.database, kind="run.submitted") if e.ref == run_id
        ]
        assert submitted and submitted[0].payload["provenance"]["transport"] == "executor"


async def test_a_crash_between_firing_and_advancing_does_not_fire_twice(
    database_url: str,
    tmp_path: Path,
    upstream: McpUpstreamServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lease the dying worker takes outlasts the restart, however slow it is.
    monkeypatch.setattr(schedules_module, "SCHEDULE_LEASE_S", 3600.0)
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        schedule_id = await _add(parts)
        occurrence = await _due_since(parts, schedule_id, 0)
        submit = parts.executor.submit

        async def submit_then_die(*args: Any, **kwargs: Any) -> tuple[str, bool]:
            await submit(*args, **kwargs)
            raise Crash  # after the run exists, before next_fire_at moves

        monkeypatch.setattr(parts.executor, "submit", submit_then_die)
        with pytest.raises(Crash):
            await parts.executor.schedules.fire_due()
        [first] = _fired(parts, schedule_id)
        assert _schedule(parts, schedule_id).next_fire_at == occurrence  # not advanced
        monkeypatch.undo()

    # A restart: new executor, same database. While the dead worker's lease lasts,
    # nobody fires the schedule; once it ran out, the same occurrence is submitted
    # again and finds the run it already created.
    restarted = tmp_path / "restarted"
    restarted.mkdir()
    async with executor_parts(database_url, restarted, upstream.url, workers=0) as parts:
        assert _schedule(parts, schedule_id).lease_expires_at > parts.store.clock()
        assert await parts.executor.schedules.fire_due() == 0
        _lease_lapsed(parts, schedule_id)
        before = parts.store.clock()
        assert await parts.executor.schedules.fire_due() >= 1
        fired = _check_each_occurrence_once(parts, schedule_id, occurrence, before)
        assert fired[0].id == first.id
        assert await parts.executor.schedules.fire_due() == 0
        assert read_entries(parts.database, kind="schedule.skipped") == []


async def test_after_an_outage_every_missed_occurrence_fires_once(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        schedule_id = await _add(parts)
        first = await _due_since(parts, schedule_id, 3)  # down for three minutes
        before = parts.store.clock()
        fired = await parts.executor.schedules.fire_due()
        after = parts.store.clock()
        # Three missed and the current minute (and the next, if it began meanwhile).
        assert 4 <= _due(first, before) <= fired <= _due(first, after)
        assert len(_check_each_occurrence_once(parts, schedule_id, first, before)) == fired
        assert await parts.executor.schedules.fire_due() == 0
        assert read_entries(parts.database, kind="schedule.skipped") == []


async def test_after_a_long_outage_old_occurrences_are_skipped_out_loud(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        schedule_id = await _add(parts)
        first = await _due_since(parts, schedule_id, 30)  # 31 occurrences due
        before = parts.store.clock()
        fired = await parts.executor.schedules.fire_due()
        after = parts.store.clock()
        # The newest ones (and one more for a minute that began meanwhile).
        assert MAX_CATCH_UP <= fired <= MAX_CATCH_UP + int(after // 60 - before // 60)
        row = _schedule(parts, schedule_id)
        runs_fired = [r.idempotency_key for r in _fired(parts, schedule_id)]
        assert runs_fired == _keys(schedule_id, row.next_fire_at - 60 * fired, row.next_fire_at)
        # The rest are in the audit log, one entry for the whole gap.
        [skipped] = read_entries(parts.database, kind="schedule.skipped")
        last_skipped = row.next_fire_at - 60 * (fired + 1)
        assert skipped.payload == {
            "schedule_id": schedule_id,
            "count": int(last_skipped - first) // 60 + 1,
            "first": format_epoch(first),
            "last": format_epoch(last_skipped),
        }
        assert await parts.executor.schedules.fire_due() == 0
