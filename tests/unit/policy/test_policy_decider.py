"""The decider's queue: a decision that cannot start in time is PolicyUnavailable (503,
retry), never a deny; one that started and overran its deadline is a deny that says
so. Engines here are explicit test doubles that block until the test lets them go."""

from __future__ import annotations

import anyio
import pytest

from gateway.errors import PolicyUnavailable
from gateway.policy.decider import Decider, DecisionQueue
from gateway.types import Decision
from tests.support.engines import GatedEngine

pytestmark = pytest.mark.anyio


def decider(
    engine: GatedEngine, *, size: int, wait_s: float = 30, timeout_s: float = 30
) -> Decider:
    return Decider(
        engine, timeout_s=timeout_s, queue=DecisionQueue(concurrency=1, size=size, wait_s=wait_s)
    )


async def test_a_full_queue_is_unavailable_not_a_deny() -> None:
    engine = GatedEngine()
    deciding = decider(engine, size=0)
    results: list[Decision] = []
    async with anyio.create_task_group() as tasks:

        async def first() -> None:
            results.append(await deciding.decide({}))

        tasks.start_soon(first)
        await engine.one_started.wait()
        with pytest.raises(PolicyUnavailable) as refused:
            await deciding.decide({})
        assert refused.value.http_status == 503
        assert refused.value.retry_after_s >= 1
        assert "already waiting" in refused.value.message
        engine.release.set()
    assert [d.allow for d in results] == [True]
    assert engine.started == 1  # the refused one never reached the engine


async def test_a_waiting_decision_runs_when_a_slot_frees() -> None:
    engine = GatedEngine()
    deciding = decider(engine, size=1)
    results: list[bool] = []
    async with anyio.create_task_group() as tasks:

        async def one() -> None:
            results.append((await deciding.decide({})).allow)

        tasks.start_soon(one)
        await engine.one_started.wait()
        tasks.start_soon(one)  # waits for the slot
        await anyio.wait_all_tasks_blocked()
        assert engine.started == 1
        engine.release.set()
    assert results == [True, True]
    assert engine.started == 2


async def test_no_slot_within_the_wait_is_unavailable() -> None:
    engine = GatedEngine()  # never released: the slot never frees
    deciding = decider(engine, size=5, wait_s=0.01)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(deciding.decide, {})
        await engine.one_started.wait()
        with pytest.raises(PolicyUnavailable, match="could start within 10 ms"):
            await deciding.decide({})
        tasks.cancel_scope.cancel()


async def test_an_evaluation_that_overruns_its_deadline_is_unavailable_not_a_deny() -> None:
    # On a starved machine a sound policy overruns too: no answer is not a denial.
    engine = GatedEngine()  # never released: the evaluation never ends
    with pytest.raises(PolicyUnavailable, match="did not answer within 10 ms") as refused:
        await decider(engine, size=0, timeout_s=0.01).decide({})
    assert refused.value.retry_after_s == 1


async def test_a_list_whose_evaluation_overruns_is_unavailable_not_an_empty_list() -> None:
    engine = GatedEngine()
    with pytest.raises(PolicyUnavailable, match="did not answer within 10 ms"):
        await decider(engine, size=0, timeout_s=0.01).evaluate_list({})


def test_a_queue_needs_sane_bounds() -> None:
    with pytest.raises(ValueError):
        DecisionQueue(concurrency=0, size=1, wait_s=1)
