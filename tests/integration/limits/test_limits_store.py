"""Limits counted in the database, on SQLite and PostgreSQL, with time moved by hand:
calls per fixed window, concurrent calls, all of a call's limits or none, two
"replicas" (two engines and limiters on one database) sharing every counter, the slot
of a process that died freed after its lease, and a database that cannot be reached
refusing the call (fail closed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.errors import CallLimited, LimitsUnavailable
from gateway.limits import Limiter, LimitStore, limit_key
from gateway.metrics import CALLS_LIMITED
from gateway.store import create_engine
from gateway.store.tables import limit_counters, limit_slots
from gateway.types import Limit
from tests.support.clock import FakeClock
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio

LEASE_S = 300.0
PER_MINUTE = Limit("agent-calls", {"principal": "iss agent:a"}, calls=3, window_s=60)
TWO_AT_ONCE = Limit("up-writes", {"upstream": "up"}, concurrent=2)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_000_000.0)  # 40 s into a minute window


@pytest.fixture
def limiter(engine: Engine, clock: FakeClock) -> Limiter:
    return Limiter(LimitStore(engine), clock, lease_s=LEASE_S)


@pytest.fixture
def replica(database_url: str, engine: Engine, clock: FakeClock) -> Iterator[Limiter]:
    """A second process's limiter: its own engine on the same database."""
    other = create_engine(database_url)
    yield Limiter(LimitStore(other), clock, lease_s=LEASE_S)
    other.dispose()


async def refused(limiter: Limiter, *limits: Limit) -> CallLimited:
    with pytest.raises(CallLimited) as caught:
        await limiter.admit(limits, "req")
    return caught.value


def counted(engine: Engine, limit: Limit) -> int:
    with engine.connect() as conn:
        value = conn.scalar(
            sa.select(limit_counters.c.calls).where(limit_counters.c.key == limit_key(limit))
        )
    return int(value or 0)


async def test_calls_per_window_until_the_window_ends(limiter: Limiter, clock: FakeClock) -> None:
    series = CALLS_LIMITED.labels("agent-calls", "calls")
    before = series._value.get()
    for _ in range(3):
        await limiter.admit([PER_MINUTE], "req")
    limited = await refused(limiter, PER_MINUTE)
    assert limited.http_status == 429 and limited.retry_after_s == 20
    assert limited.details["limit"] == "agent-calls" and limited.details["kind"] == "calls"
    assert limited.details["max"] == 3 and limited.details["window_s"] == 60
    assert series._value.get() == before + 1
    clock.advance(19)
    assert (await refused(limiter, PER_MINUTE)).retry_after_s == 1
    clock.advance(1)  # the next window
    for _ in range(3):
        await limiter.admit([PER_MINUTE], "req")
    assert (await refused(limiter, PER_MINUTE)).retry_after_s == 60


async def test_refused_calls_are_not_counted(limiter: Limiter, engine: Engine) -> None:
    generous = Limit("generous", {}, calls=100, window_s=60)
    tight = Limit("tight", {}, calls=1, window_s=60)
    await limiter.admit([generous, tight], "req")
    for _ in range(3):
        await refused(limiter, generous, tight)
    # All of a call's limits or none: the refusals by "tight" counted nothing anywhere.
    assert counted(engine, generous) == 1 and counted(engine, tight) == 1


async def test_scopes_count_apart(limiter: Limiter) -> None:
    other = Limit("agent-calls", {"principal": "iss agent:b"}, calls=3, window_s=60)
    for _ in range(3):
        await limiter.admit([PER_MINUTE], "req")
    await refused(limiter, PER_MINUTE)
    await limiter.admit([other], "req")  # another principal: another counter


async def test_concurrent_calls_until_one_ends(limiter: Limiter, engine: Engine) -> None:
    first = await limiter.admit([TWO_AT_ONCE], "req-1")
    await limiter.admit([TWO_AT_ONCE], "req-2")
    limited = await refused(limiter, TWO_AT_ONCE)
    assert limited.details["kind"] == "concurrent" and limited.retry_after_s == 1
    await first.release()
    await first.release()  # idempotent
    third = await limiter.admit([TWO_AT_ONCE], "req-3")
    assert len(third.slots) == 1
    with engine.connect() as conn:
        holders = conn.execute(sa.select(limit_slots.c.request_id, limit_slots.c.holder)).all()
    assert sorted(r.request_id for r in holders) == ["req-2", "req-3"]
    assert {r.holder for r in holders} == {limiter.holder}


async def test_a_window_and_a_concurrency_limit_in_one_entry(limiter: Limiter) -> None:
    both = Limit("both", {}, calls=2, window_s=60, concurrent=1)
    held = await limiter.admit([both], "req")
    assert (await refused(limiter, both)).details["kind"] == "concurrent"
    await held.release()
    await limiter.admit([both], "req")  # the refusal above counted no call
    assert (await refused(limiter, both)).details["kind"] == "calls"


async def test_a_dead_processes_slot_is_freed_after_its_lease(
    limiter: Limiter, replica: Limiter, clock: FakeClock, engine: Engine
) -> None:
    one = Limit("one", {}, concurrent=1)
    await limiter.admit([one], "held-by-the-dead")  # never released: the process died
    await refused(replica, one)
    clock.advance(LEASE_S - 1)
    await refused(replica, one)  # the lease has not ended
    clock.advance(1)
    admitted = await replica.admit([one], "after-the-lease")
    assert admitted.slots
    with engine.connect() as conn:
        rows = conn.execute(sa.select(limit_slots.c.request_id, limit_slots.c.expires_at)).all()
    # The dead slot was deleted on the way; the new one has a lease of its own.
    assert [(r.request_id, r.expires_at) for r in rows] == [
        ("after-the-lease", 1_000_000.0 + 2 * LEASE_S)
    ]


async def test_two_replicas_share_one_window(limiter: Limiter, replica: Limiter) -> None:
    seven = Limit("seven", {"principal": "p"}, calls=7, window_s=3600)

    async def attempt(target: Limiter) -> bool:
        try:
            await target.admit([seven], "req")
        except CallLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt((limiter, replica)[i % 2]) for i in range(20)))
    assert sum(results) == 7


async def test_two_replicas_share_concurrency_slots(limiter: Limiter, replica: Limiter) -> None:
    three = Limit("three", {}, concurrent=3)

    async def attempt(target: Limiter) -> bool:
        try:
            await target.admit([three], "req")  # held: none is released
        except CallLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt((limiter, replica)[i % 2]) for i in range(12)))
    assert sum(results) == 3


async def test_sweep_deletes_what_counts_nothing(
    limiter: Limiter, engine: Engine, clock: FakeClock
) -> None:
    await limiter.admit([PER_MINUTE, TWO_AT_ONCE], "req")
    store = LimitStore(engine)
    assert store.sweep(now=clock()) == 0
    assert store.in_use(TWO_AT_ONCE, now=clock()) == 1
    assert store.sweep(now=clock() + LEASE_S) == 1  # the slot's lease ended
    assert store.sweep(now=clock() + 32 * 86400) == 2  # both counters, untouched since


async def test_no_limits_touch_no_database(clock: FakeClock) -> None:
    broken = create_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    admission = await Limiter(LimitStore(broken), clock, lease_s=LEASE_S).admit([], "req")
    assert admission.slots == ()
    await admission.release()
    broken.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_an_unusable_database_refuses_the_call(
    kind: str, clock: FakeClock, tmp_path: Path
) -> None:
    # PostgreSQL: no server listens. SQLite: a file without the limits' tables (a
    # database file cannot be made unreachable to its own process).
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    else:
        url = f"postgresql://gateway@127.0.0.1:{free_port()}/gateway"
    unusable = create_engine(url)
    with pytest.raises(LimitsUnavailable) as caught:
        await Limiter(LimitStore(unusable), clock, lease_s=LEASE_S).admit([PER_MINUTE], "req")
    assert caught.value.http_status == 503 and caught.value.retry_after_s == 2
    assert "the call was not executed" in caught.value.message
    unusable.dispose()
