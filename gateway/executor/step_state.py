"""A step's state in a run, and the transitions that change it.

The runner (`gateway.executor.runner.RunExecution`) keeps one `StepState` per step and
is the only code that changes it: the step logic (`steps`, `gates`) looks at a state,
does the step's work (calls, approvals), and returns a `Transition` saying what
happened to the step; the runner applies it (`RunState.apply`): writes it, fenced,
now or carried by the run's next write; mirrors it in the state; fails the run if the
step failed; queues its audit event. A state is frozen, so a step's logic that tried
to change one would fail at once rather than drift from what the database holds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class StepStatus(enum.StrEnum):
    """The ``status`` of a ``run_steps`` row."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # a timer, a retry backoff or an approval; no lease held for it
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# A need in one of these is met: its dependents may start.
DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
# Never changes again (``finished_at`` is set when a step reaches one).
FINAL = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED)
# Not finished: what cancelling or finishing a run cancels.
OPEN = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING)


@dataclass(frozen=True, slots=True)
class StepState:
    """What the runner knows of one step (mirroring its ``run_steps`` row)."""

    status: StepStatus
    output: Any = None
    failures: int = 0
    wake_at: float | None = None  # database clock
    compensation: str | None = None
    approval_id: str | None = None
    attempts: int = 0  # of the step itself (not its compensation), the last one's number
    # Read as "running": a dead worker's attempt may still be marked running.
    orphaned: bool = False


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """The attempt a transition ends: recorded in ``step_attempts`` together with the
    step's new columns."""

    purpose: str  # "step" or "compensate"
    attempt: int
    status: str  # the attempt's own: ok, tool_error, timeout, denied, refused, …
    error: dict[str, Any] | None


# The step columns a `StepState` mirrors (the others, such as the recorded arguments,
# are only written).
MIRRORED = ("status", "output", "failures", "compensation", "approval_id")


@dataclass(frozen=True, slots=True)
class Transition:
    """What happened to one step, for the runner to apply.

    ``values`` are the step's new columns (``status`` a `StepStatus`). ``ended``: the
    attempt this ends, written in the same statement. ``wake_in_s``: the step's
    ``wake_at``, that far from now on the database clock. ``carried``: written by the
    run's next write rather than now (a success, docs/decisions/0011). ``event``: the
    audit event to queue. ``run_failure``: what the run failed of, when that is not the
    step's own error (a step that failed sets the run's failure to its error).
    """

    step_id: str
    values: Mapping[str, Any] = field(default_factory=dict)
    ended: AttemptEnd | None = None
    wake_in_s: float | None = None
    carried: bool = False
    event: tuple[str, dict[str, Any]] | None = None
    run_failure: dict[str, Any] | None = None

    @property
    def status(self) -> StepStatus | None:
        return self.values.get("status")

    @classmethod
    def skipped(cls, step_id: str) -> Transition:
        """The step's ``when`` is false, or a need was skipped and it has no ``when``."""
        return cls(
            step_id, {"status": StepStatus.SKIPPED}, event=("step.skipped", {"step_id": step_id})
        )

    @classmethod
    def failed(cls, step_id: str, error: dict[str, Any]) -> Transition:
        """The step failed before or without an attempt (a bad expression, a tool that
        changed, a gate that cannot ask)."""
        return cls(
            step_id,
            {"status": StepStatus.FAILED, "error": error},
            event=("step.failed", {"step_id": step_id, "error": error}),
        )
