"""The one rule for work on the event loop: inline while recent runs were fast."""

from __future__ import annotations

import pytest

from gateway.inline_budget import INLINE_BUDGET_S, InlineBudget


class StepClock:
    """A clock that moves only when told, as a run of the work would move it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_work_is_inline_until_a_slow_run_and_again_after_fast_ones() -> None:
    budget = InlineBudget(0.002)
    assert budget.allows()
    budget.record(0.05)  # one stall: 25 times the budget
    assert not budget.allows()
    fast_runs = 0
    while not budget.allows():
        budget.record(0.0)
        fast_runs += 1
    # 0.05 · 0.2 = 0.01, then each fast run keeps 0.8 of it: 0.01 · 0.8^n < 0.002.
    assert fast_runs == 8


def test_one_slow_run_among_fast_ones_does_not_stop_inline_work_if_under_budget() -> None:
    budget = InlineBudget(0.002)
    budget.record(0.009)  # average 0.0018: still under
    assert budget.allows()
    budget.record(0.009)
    assert not budget.allows()


def test_timed_counts_how_long_the_work_took_on_the_clock() -> None:
    clock = StepClock()
    budget = InlineBudget(0.002, clock=clock)

    def slow_write(seconds: float) -> str:
        clock.now += seconds
        return "written"

    assert budget.timed(slow_write, 0.001) == "written"
    assert budget.allows()
    assert budget.timed(slow_write, seconds=0.5) == "written"
    assert not budget.allows()


def test_a_run_that_fails_is_counted_too() -> None:
    clock = StepClock()
    budget = InlineBudget(clock=clock)

    def stalls_then_fails() -> None:
        clock.now += 1.0
        raise OSError("disk stalled")

    with pytest.raises(OSError, match="disk stalled"):
        budget.timed(stalls_then_fails)
    assert not budget.allows()


def test_the_default_budget_is_two_milliseconds() -> None:
    budget = InlineBudget()
    budget.record(INLINE_BUDGET_S / 0.2 * 0.99)
    assert budget.allows()
    budget.record(INLINE_BUDGET_S * 10)
    assert not budget.allows()
