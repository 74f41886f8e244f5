"""Driving one claimed run's DAG: which steps start, which are skipped, when to look again.

The runner drives the DAG: it starts every step whose needs are done (up to
``max_parallel_steps`` at once), skips those whose ``when`` is false, and hands each
tool call to the one pipeline under the submitter's identity with the executor as
current actor. `RunDriver` (a base class of `gateway.executor.runner.RunExecution`)
is that part of the runner: `_drive` runs the steps until the run succeeds, fails, is
cancelled or only waiting is left, and says which; the runner concludes the run with
it. Its state changes go through `gateway.executor.run_state.RunState.apply`.

A tool step that a success made ready is run by the same task, at once (`_successor`);
the driver wakes for what else became ready. A chain of steps thus goes from one call
to the next without a trip through the driver.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc

from gateway import telemetry
from gateway.executor import gates
from gateway.executor import steps as step_logic
from gateway.executor.errors import ExpressionError, LeaseLost
from gateway.executor.expressions import condition_holds
from gateway.executor.plan import ApprovalStep, SleepStep, ToolStep
from gateway.executor.run_state import RunState
from gateway.executor.step_state import DONE, FINAL, StepState, StepStatus, Transition


class RunDriver(RunState):
    # --- scheduling ----------------------------------------------------------------

    async def _drive(self) -> str:
        send, receive = anyio.create_memory_object_stream[str](1000)
        running = self._running
        async with anyio.create_task_group() as steps:
            self._steps_scope = steps.cancel_scope
            while True:
                if self.cancel_requested:
                    steps.cancel_scope.cancel()
                    return "cancelled"
                if self._deadline_near() and await self.db(self.store.deadline_passed, self.run_id):
                    steps.cancel_scope.cancel()
                    self.failure = {
                        "code": "deadline_exceeded",
                        "message": "the run did not finish before its deadline",
                    }
                    return "failed"
                if self.failure is None:
                    await self._advance(running, steps, send)
                if not running:
                    if self.failure is not None:
                        return "failed"
                    if all(s.status in FINAL for s in self.states.values()):
                        return "succeeded"
                    if any(s.status == StepStatus.WAITING for s in self.states.values()):
                        return "waiting"
                    self.failure = {"code": "run_stuck", "message": "no step can run"}
                    return "failed"
                if not self.writer.starting:
                    # No step about to make a first write that would carry the unwritten
                    # results: write them before waiting. (Concluding writes them too.)
                    await self.writer.flush()
                with anyio.move_on_after(self._next_wake_in()):
                    running.discard(await receive.receive())
                    while True:  # collect every other step that finished meanwhile
                        try:
                            running.discard(receive.receive_nowait())
                        except anyio.WouldBlock:
                            break
        return "failed"  # unreachable: the loop returns

    def _deadline_near(self) -> bool:
        """Whether to ask the database if the deadline passed (its clock decides)."""
        if self.deadline_at is None:
            return False
        return self.deadline_at - (time.time() + self.clock_offset) < 0.05

    def _next_wake_in(self) -> float:
        now = time.time() + self.clock_offset
        wakes = [
            s.wake_at for s in self.states.values() if s.status == StepStatus.WAITING and s.wake_at
        ]
        if self.deadline_at is not None:
            wakes.append(self.deadline_at)
        if not wakes:
            return math.inf
        return max(0.005, min(wakes) - now)

    async def _advance(
        self,
        running: set[str],
        steps: anyio.abc.TaskGroup,
        send: Any,
    ) -> None:
        changed = True
        while changed and self.failure is None:
            changed = False
            for step in self.plan.steps:
                state = self.states[step.id]
                if step.id in running or state.status in FINAL:
                    continue
                if len(running) >= self.deps.config.max_parallel_steps:
                    return
                needs = [self.states[n].status for n in step.needs]
                if not all(s in DONE for s in needs):
                    continue
                if state.status == StepStatus.WAITING and state.approval_id:
                    gate = isinstance(step, ApprovalStep)
                    settle = gates.approval_gate if gate else gates.waiting_tool_step
                    changed = await self._apply(await settle(self, step)) or changed
                    continue
                if state.status == StepStatus.WAITING:
                    if not await self._due(step.id, state):
                        continue
                    if isinstance(step, SleepStep):
                        changed = await self._apply(step_logic.sleep_step(step, state))
                        continue
                elif state.status == StepStatus.PENDING and await self._skips(step, needs):
                    changed = await self._apply(Transition.skipped(step.id))
                    continue
                if self.failure is not None:
                    return
                if isinstance(step, SleepStep):
                    changed = await self._apply(step_logic.sleep_step(step, state))
                    continue
                if isinstance(step, ApprovalStep):
                    changed = await self._apply(await gates.approval_gate(self, step)) or changed
                    continue
                assert isinstance(step, ToolStep)
                self._start(step)
                steps.start_soon(self._step_task, step, send)

    async def _due(self, step_id: str, state: StepState) -> bool:
        if state.wake_at is not None and state.wake_at - (time.time() + self.clock_offset) > 0.05:
            return False
        return bool(await self.db(self.store.step_due, self.claim, step_id))

    async def _skips(self, step: Any, needs: list[StepStatus]) -> bool:
        """A skipped need skips a step that gives no ``when`` of its own."""
        if step.when is None:
            return StepStatus.SKIPPED in needs
        try:
            return not condition_holds(step.when, self.context())
        except ExpressionError as exc:
            await self.apply(Transition.failed(step.id, exc.to_dict()))
            return False

    def _start(self, step: ToolStep) -> None:
        self._running.add(step.id)
        self.writer.starting.add(step.id)
        self.states[step.id] = replace(self.states[step.id], status=StepStatus.RUNNING)

    async def _step_task(self, step: ToolStep, send: Any) -> None:
        current: ToolStep | None = step
        while current is not None:
            following = None
            try:
                with telemetry.span("gateway.step", current.id) as span:
                    if span is not None:
                        telemetry.annotate(span, self._step_attributes(current))
                    # Applied as soon as the step's logic returns, with no await between.
                    await self.apply(await step_logic.run_tool_step(self, current))
                following = self._successor(current)
            except LeaseLost:
                self.lose()
            finally:
                self.writer.starting.discard(current.id)
                send.send_nowait(current.id)  # the driver starts whatever else is ready
            current = following

    def _step_attributes(self, step: ToolStep) -> dict[str, Any]:
        return {
            "gateway.run_id": self.run_id,
            "gateway.step_id": step.id,
            "gateway.tool": step.tool,
        }

    def _successor(self, step: ToolStep) -> ToolStep | None:
        """A tool step that ``step``'s success made ready, now taken over by the
        calling task (in the slot ``step`` frees). Only the plain case: pending, no
        ``when``, every need succeeded; the driver handles the rest."""
        if self.failure is not None or self.cancel_requested:
            return None
        if self.states[step.id].status != StepStatus.SUCCEEDED:
            return None
        for candidate in self._dependents[step.id]:
            if not isinstance(candidate, ToolStep) or candidate.when is not None:
                continue
            pending = self.states[candidate.id].status == StepStatus.PENDING
            if candidate.id in self._running or not pending:
                continue
            if all(self.states[need].status == StepStatus.SUCCEEDED for need in candidate.needs):
                self._start(candidate)
                return candidate
        return None
