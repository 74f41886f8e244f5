"""Step state: the statuses, the frozen state only the runner replaces, and the
transitions the step logic returns instead of changing it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from gateway.executor import steps
from gateway.executor.plan import SleepStep
from gateway.executor.step_state import DONE, FINAL, OPEN, StepState, StepStatus, Transition
from gateway.store.tables import STEP_STATUSES

EXECUTOR = Path(__file__).resolve().parents[3] / "gateway" / "executor"


def test_the_statuses_are_the_ones_the_schema_allows() -> None:
    assert {s.value for s in StepStatus} == set(STEP_STATUSES)
    assert set(DONE) < set(FINAL)
    assert set(FINAL) | set(OPEN) == set(StepStatus) and not set(FINAL) & set(OPEN)
    assert "succeeded" in DONE and StepStatus("waiting") is StepStatus.WAITING


def test_a_step_state_cannot_be_changed_in_place() -> None:
    state = StepState(StepStatus.RUNNING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.status = StepStatus.SUCCEEDED  # type: ignore[misc]


def test_the_step_logic_imports_no_runner() -> None:
    """The runner imports the step logic and applies what it returns; the other way
    round would be a cycle (even under TYPE_CHECKING)."""
    for name in ("steps.py", "gates.py", "run_view.py", "step_state.py"):
        tree = ast.parse((EXECUTOR / name).read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        runner = {
            "gateway.executor.runner",
            "gateway.executor.driver",
            "gateway.executor.run_state",
        }
        assert not imported & runner, name


def test_a_failed_step_says_so_and_names_its_error() -> None:
    error = {"code": "tool_changed", "message": "changed"}
    change = Transition.failed("a", error)
    assert change.status is StepStatus.FAILED
    assert change.values == {"status": StepStatus.FAILED, "error": error}
    assert change.event == ("step.failed", {"step_id": "a", "error": error})
    assert change.ended is None and not change.carried and change.run_failure is None


def test_a_skipped_step_is_final_without_an_attempt() -> None:
    change = Transition.skipped("b")
    assert change.values == {"status": StepStatus.SKIPPED} and change.ended is None
    assert change.event == ("step.skipped", {"step_id": "b"})


def test_a_sleep_step_waits_then_succeeds() -> None:
    step = SleepStep(id="nap", sleep_s=2.5)
    start = steps.sleep_step(step, StepState(StepStatus.PENDING))
    assert start.values == {"status": StepStatus.WAITING} and start.wake_in_s == 2.5
    assert start.event == ("step.started", {"step_id": "nap", "kind": "sleep"})
    end = steps.sleep_step(step, StepState(StepStatus.WAITING, wake_at=1.0))
    assert end.values == {"status": StepStatus.SUCCEEDED, "output": {}}
    assert end.event == ("step.completed", {"step_id": "nap", "kind": "sleep"})
