"""Schedules fire, once per occurrence, across a crash and a restart, on SQLite and
PostgreSQL.

Cron has minute granularity and firing reads only the database clock, so instead of
waiting for minutes to pass the tests move a schedule's ``next_fire_at`` back to an
explicit minute boundary ("the gateway was down since then") and let the service do
the rest. What is checked is the contract in gateway/executor/schedules.py: every due
occurrence becomes exactly one run with the key ``schedule:<id>:<time>``, consecutive
and without gaps, and occurrences too old to fire are written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from gateway.audit import read_entries
from gateway.executor import schedules as schedules_module
from gateway.executor.schedules import MAX_CATCH_UP
from gateway.store.tables import runs, schedules
from gateway.timestamps import format_epoch
from tests.integration.executor.harness import AGENT, Parts, executor_parts
from tests.support.processes import McpUpstreamServer

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
    before the current one (database clock); returns that occurrence. Not in a
    minute's last seconds, so that no new minute begins while a test counts firings."""
    now = parts.store.clock()
    if now % 60 > 55:
        await anyio.sleep(60.2 - now % 60)
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


def _keys(schedule_id: str, first: float, end: float) -> list[str]:
    """The idempotency keys of every minute from ``first`` up to, not including, ``end``."""
    return [f"schedule:{schedule_id}:{format_epoch(t)}" for t in range(int(first), int(end), 60)]


def _check_each_occurrence_once(parts: Parts, schedule_id: str, first: float) -> list[Any]:
    """Every occurrence from ``first`` to the schedule's ``next_fire_at`` (exclusive)
    has exactly one run, and ``next_fire_at`` is in the future."""
    row = _schedule(parts, schedule_id)
    assert row.next_fire_at > parts.store.clock() - 1  # caught up (1 s: the test's own time)
    fired = _fired(parts, schedule_id)
    assert [r.idempotency_key for r in fired] == _keys(schedule_id, first, row.next_fire_at)
    assert row.last_run_id == fired[-1].id
    assert row.lease_expires_at is None
    return fired


async def test_a_due_schedule_fires_and_its_run_runs(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=1) as parts:
        schedule_id = await _add(parts)
        assert _fired(parts, schedule_id) == []  # registering fires nothing
        occurrence = await _due_since(parts, schedule_id, 0)
        for _ in range(200):  # the worker's idle loop fires it
            if _fired(parts, schedule_id):
                break
            await anyio.sleep(0.05)
        run_id = _fired(parts, schedule_id)[0].id
        view = await parts.wait(run_id)
        assert view["status"] == "succeeded", view
        assert view["schedule_id"] == schedule_id
        assert view["steps"][0]["output"] == {"result": "t"}
        await anyio.sleep(0.5)  # more polls by the worker: nothing fires again
        fired = _check_each_occurrence_once(parts, schedule_id, occurrence)
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
    monkeypatch.setattr(schedules_module, "SCHEDULE_LEASE_S", 1.0)
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
    # nobody fires the schedule; then the same occurrence is submitted again and
    # finds the run it already created.
    monkeypatch.setattr(schedules_module, "SCHEDULE_LEASE_S", 1.0)
    restarted = tmp_path / "restarted"
    restarted.mkdir()
    async with executor_parts(database_url, restarted, upstream.url, workers=0) as parts:
        if _schedule(parts, schedule_id).lease_expires_at > parts.store.clock():
            assert await parts.executor.schedules.fire_due() == 0
            await anyio.sleep(1.1)
        assert await parts.executor.schedules.fire_due() >= 1
        fired = _check_each_occurrence_once(parts, schedule_id, occurrence)
        assert fired[0].id == first.id
        assert await parts.executor.schedules.fire_due() == 0
        assert read_entries(parts.database, kind="schedule.skipped") == []


async def test_after_an_outage_every_missed_occurrence_fires_once(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        schedule_id = await _add(parts)
        first = await _due_since(parts, schedule_id, 3)  # down for three minutes
        fired = await parts.executor.schedules.fire_due()
        assert fired == 4  # three missed and the current minute
        assert len(_check_each_occurrence_once(parts, schedule_id, first)) == fired
        assert await parts.executor.schedules.fire_due() == 0
        assert read_entries(parts.database, kind="schedule.skipped") == []


async def test_after_a_long_outage_old_occurrences_are_skipped_out_loud(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        schedule_id = await _add(parts)
        first = await _due_since(parts, schedule_id, 30)  # 31 occurrences due
        fired = await parts.executor.schedules.fire_due()
        assert fired == MAX_CATCH_UP  # the newest ones
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
