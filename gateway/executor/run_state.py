"""What one claimed run holds while it executes, and the one place a step's state changes.

`RunState` is the state of a `gateway.executor.runner.RunExecution` (its base class):
the claim, the run's writer, each step's `StepState`, the run's failure and its queued
audit events.

The runner is the only code that changes a step's state (`StepState`, frozen): the
step logic (`steps`, `gates`) sees the run as a `RunView` and returns a `Transition`
saying what happened to the step, which `apply` writes, mirrors and audits. Each state
change is a fenced write (`gateway.executor.progress`), made through the run's
`RunWriter`: one at a time, in the order asked for; a step's success is carried by the
next write (see `gateway.executor.writer`), while the runner's own state says
"succeeded" at once, so dependents start without waiting.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio

from gateway.executor import progress
from gateway.executor.deps import ExecutorDeps
from gateway.executor.plan import Plan
from gateway.executor.step_state import DONE, MIRRORED, StepState, StepStatus, Transition
from gateway.executor.store import Claim, StepFinish
from gateway.executor.writer import RunWriter, in_thread
from gateway.types import Principal


class RunState:
    # Loaded with the run, when it starts executing (`RunExecution._execute`).
    plan: Plan
    inputs: dict[str, Any]
    submitter: Principal
    principal: Principal
    provenance: dict[str, Any]
    deadline_at: float | None
    states: dict[str, StepState]
    clock_offset: float
    _dependents: dict[str, list[Any]]

    def __init__(self, deps: ExecutorDeps, claim: Claim) -> None:
        self.deps = deps
        self.store = deps.store
        self.claim = claim
        self.run_id = claim.run_id
        self.lost = False
        self.cancel_requested = False
        self.failure: dict[str, Any] | None = None
        self._outer: anyio.CancelScope | None = None
        self._steps_scope: anyio.CancelScope | None = None
        self._deferred: list[tuple[str, dict[str, Any]]] = []
        self.writer = RunWriter(self.store, claim)
        # The fenced writes (`progress` functions), one at a time, in order.
        self.write = self.writer.write
        self._running: set[str] = set()  # tool steps with a task

    async def db(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await in_thread(function, *args, **kwargs)

    def lose(self) -> None:
        self.lost = True
        if self._outer is not None:
            self._outer.cancel()

    # --- step state: read by the step logic, changed here only ---------------------

    def state(self, step_id: str) -> StepState:
        return self.states[step_id]

    def context(self, including: str | None = None) -> dict[str, Any]:
        """The expression context: inputs, and every finished (or ``including``) step."""
        return {
            "inputs": self.inputs,
            "steps": {
                step_id: {"output": state.output, "status": str(state.status)}
                for step_id, state in self.states.items()
                if state.status in DONE or step_id == including
            },
        }

    async def _apply(self, change: Transition | None) -> bool:
        """Applies ``change``, if any; returns whether the step changed."""
        if change is None:
            return False
        await self.apply(change)
        return True

    async def apply(self, change: Transition) -> None:
        """The one place a step's state changes: writes ``change`` (fenced; a carried
        one by the run's next write, so nothing here awaits for it), mirrors it in the
        step's state, fails the run if the step failed, and queues its event."""
        values = dict(change.values)
        wake_at = None
        if change.ended is not None:
            ended = change.ended
            finish = StepFinish(
                change.step_id, ended.purpose, ended.attempt, ended.status, ended.error, values
            )
            if change.carried:
                self.writer.defer(finish)
            else:
                wake_at = await self.write(progress.finish_attempt, finish, change.wake_in_s)
        elif values or change.wake_in_s is not None:
            wake_at = await self.write(
                progress.update_step, change.step_id, values, change.wake_in_s
            )
        mirrored = {name: values[name] for name in MIRRORED if name in values}
        if wake_at is not None:
            mirrored["wake_at"] = wake_at
        if change.ended is not None and change.ended.purpose == "step":
            mirrored.update(attempts=change.ended.attempt, orphaned=False)
        self.states[change.step_id] = replace(self.states[change.step_id], **mirrored)
        if change.run_failure is not None:
            self.failure = change.run_failure
        elif change.status == StepStatus.FAILED:
            self._fail_run(change.step_id, values.get("error") or {})
        if change.event is not None:
            self.event(*change.event)

    def _fail_run(self, step_id: str, error: dict[str, Any]) -> None:
        if self.failure is None:
            message = error.get("message", "failed")
            self.failure = {
                "code": "step_failed",
                "step": step_id,
                "message": f"step {step_id} failed: {message}",
                "cause": error,
            }

    async def started(self, step_id: str) -> None:
        await self.writer.started(step_id)

    def event(self, kind: str, payload: dict[str, Any], *, defer: bool = False) -> None:
        """Queues an audit event. ``defer``: hold it until the next event, so the two
        go in one audit batch; a step.started queued on its own would make the step's
        own call.attempt wait for one more commit in front of it."""
        self._deferred.append((kind, payload))
        if not defer:
            events, self._deferred = self._deferred, []
            self.deps.events(events, self.run_id, self.submitter.sub)
