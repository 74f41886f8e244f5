"""Executing one claimed run until it finishes, waits, or its lease is lost.

The runner drives the DAG: it starts every step whose needs are done (up to
``max_parallel_steps`` at once), skips those whose ``when`` is false, and hands each
tool call to the one pipeline under the submitter's identity with the executor as
current actor. Each state change is a fenced write (`RunStore.guarded`).

When only waiting is left (a timer, a retry backoff, an approval), the run is
released: no lease, no thread, no task; ``wake_at`` on the database clock says when
any worker may claim it again. When its lease is lost (`LeaseLost`), the runner stops
at once without writing anything more: the new owner carries on from the database.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.abc

from gateway.errors import GatewayError
from gateway.executor import gates
from gateway.executor import steps as step_logic
from gateway.executor.deps import ExecutorDeps
from gateway.executor.errors import ExpressionError, LeaseLost
from gateway.executor.expressions import condition_holds
from gateway.executor.plan import ApprovalStep, Plan, SleepStep, ToolStep, order, parse_plan
from gateway.executor.records import executor_principal, principal_from_json
from gateway.executor.store import Claim

log = logging.getLogger(__name__)
T = TypeVar("T")

DONE = ("succeeded", "skipped")
TERMINAL = ("succeeded", "skipped", "failed", "cancelled")


@dataclass
class StepState:
    status: str
    output: Any = None
    failures: int = 0
    wake_at: float | None = None  # database clock
    compensation: str | None = None
    approval_id: str | None = None


class RunExecution:
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
        self._wake: Any = None
        self._deferred: list[tuple[str, dict[str, Any]]] = []

    async def db(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))

    # --- the whole run ------------------------------------------------------------------

    async def execute(self) -> str:
        """Runs until the run finishes or waits; returns what happened (``succeeded``,
        ``failed``, ``cancelled``, ``waiting`` or ``lost``)."""
        try:
            result = await self._execute()
        except LeaseLost as exc:
            log.warning("worker %s stops run %s: %s", self.claim.worker, self.run_id, exc.message)
            return "lost"
        return "lost" if self.lost else result

    async def _execute(self) -> str:
        row = await self.db(self.store.run_row, self.run_id)
        self.plan: Plan = parse_plan(row.plan)
        self.inputs: dict[str, Any] = row.inputs
        self.submitter = principal_from_json(row.principal)
        self.principal = executor_principal(self.submitter)
        self.provenance: dict[str, Any] = row.provenance
        self.deadline_at: float | None = row.deadline_at
        self.cancel_requested = bool(row.cancel_requested)
        self.states = {
            r.step_id: StepState(
                r.status, r.output, r.failures, r.wake_at, r.compensation, r.approval_id
            )
            for r in await self.db(self.store.step_rows, self.run_id)
        }
        # Only to decide when to look again; every due-or-not answer comes from the
        # database clock.
        self.clock_offset = await self.db(self.store.clock) - time.time()
        kind = "run.started" if self.claim.token == 1 else "run.resumed"
        self.event(kind, {"worker": self.claim.worker, "fencing_token": self.claim.token})

        result = "lost"
        async with anyio.create_task_group() as outer:
            self._outer = outer.cancel_scope
            outer.start_soon(self._heartbeat)
            try:
                result = await self._drive()
            finally:
                outer.cancel_scope.cancel()
        if self.lost:
            return "lost"
        return await self._conclude(result)

    async def _conclude(self, result: str) -> str:
        if result == "waiting":
            await self.db(self.store.release, self.claim, self._release_in())
            return "waiting"
        if result == "succeeded":
            await self.db(self.store.finish_run, self.claim, "succeeded", None)
            self.event("run.completed", {"status": "succeeded"})
            return result
        if result == "cancelled":
            error = {"code": "cancelled", "message": "cancelled on request"}
            await self.db(self.store.finish_run, self.claim, "cancelled", error)
            self.event("run.cancelled", {"status": "cancelled"})
            return result
        await step_logic.compensate(self)
        await self.db(self.store.finish_run, self.claim, "failed", self.failure)
        self.event("run.failed", {"status": "failed", "error": self.failure})
        return "failed"

    def _release_in(self) -> float | None:
        """How soon a released run must be looked at again besides its timers: runs
        waiting for an approval poll for the decision."""
        if any(s.approval_id and s.status == "waiting" for s in self.states.values()):
            return self.deps.config.approval_poll_s
        return None

    # --- lease ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.deps.config.lease_s / 3
        while True:
            await anyio.sleep(interval)
            try:
                answer = await self.db(self.store.renew, self.claim, self.deps.config.lease_s)
            except Exception as exc:  # a database hiccup: writes are fenced; try again
                log.warning("renewing the lease of %s failed: %s", self.run_id, exc)
                continue
            if answer is None:
                self.lose()
                return
            if answer and not self.cancel_requested:
                self.cancel_requested = True
                if self._steps_scope is not None:
                    self._steps_scope.cancel()

    def lose(self) -> None:
        self.lost = True
        if self._outer is not None:
            self._outer.cancel()

    # --- scheduling ----------------------------------------------------------------

    async def _drive(self) -> str:
        send, receive = anyio.create_memory_object_stream[str](1000)
        running: set[str] = set()
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
                    if all(s.status in TERMINAL for s in self.states.values()):
                        return "succeeded"
                    if any(s.status == "waiting" for s in self.states.values()):
                        return "waiting"
                    self.failure = {"code": "run_stuck", "message": "no step can run"}
                    return "failed"
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
        wakes = [s.wake_at for s in self.states.values() if s.status == "waiting" and s.wake_at]
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
                if step.id in running or state.status in TERMINAL:
                    continue
                if len(running) >= self.deps.config.max_parallel_steps:
                    return
                needs = [self.states[n].status for n in step.needs]
                if not all(s in DONE for s in needs):
                    continue
                if state.status == "waiting" and state.approval_id:
                    if isinstance(step, ApprovalStep):
                        changed = await gates.approval_gate(self, step) or changed
                    else:
                        changed = await gates.waiting_tool_step(self, step) or changed
                    continue
                if state.status == "waiting":
                    if not await self._due(step.id, state):
                        continue
                    if isinstance(step, SleepStep):
                        await self.set_step(step.id, status="succeeded", output={})
                        self.event("step.completed", {"step_id": step.id, "kind": "sleep"})
                        changed = True
                        continue
                elif state.status == "pending" and await self._skips(step, needs):
                    await self.set_step(step.id, status="skipped")
                    self.event("step.skipped", {"step_id": step.id})
                    changed = True
                    continue
                if self.failure is not None:
                    return
                if isinstance(step, SleepStep):
                    await self.set_step(step.id, wake_in_s=step.sleep_s, status="waiting")
                    self.event("step.started", {"step_id": step.id, "kind": "sleep"})
                    changed = True
                    continue
                if isinstance(step, ApprovalStep):
                    changed = await gates.approval_gate(self, step) or changed
                    continue
                assert isinstance(step, ToolStep)
                running.add(step.id)
                state.status = "running"
                steps.start_soon(self._step_task, step, send)

    async def _due(self, step_id: str, state: StepState) -> bool:
        if state.wake_at is not None and state.wake_at - (time.time() + self.clock_offset) > 0.05:
            return False
        return bool(await self.db(self.store.step_due, self.claim, step_id))

    async def _skips(self, step: Any, needs: list[str]) -> bool:
        """A skipped need skips a step that gives no ``when`` of its own."""
        if step.when is None:
            return "skipped" in needs
        try:
            return not condition_holds(step.when, self.context())
        except ExpressionError as exc:
            await self.fail_step(step.id, exc.to_dict())
            return False

    async def _step_task(self, step: ToolStep, send: Any) -> None:
        try:
            await step_logic.run_tool_step(self, step)
        except LeaseLost:
            self.lose()
        finally:
            send.send_nowait(step.id)

    # --- helpers the step logic uses -------------------------------------------------------

    def context(self, including: str | None = None) -> dict[str, Any]:
        """The expression context: inputs, and every finished (or ``including``) step."""
        return {
            "inputs": self.inputs,
            "steps": {
                step_id: {"output": state.output, "status": state.status}
                for step_id, state in self.states.items()
                if state.status in DONE or step_id == including
            },
        }

    async def set_step(self, step_id: str, wake_in_s: float | None = None, **values: Any) -> None:
        wake_at = await self.db(self.store.update_step, self.claim, step_id, values, wake_in_s)
        self._mirror(step_id, values, wake_at)

    def _mirror(self, step_id: str, values: dict[str, Any], wake_at: float | None) -> None:
        state = self.states[step_id]
        for name in ("status", "output", "failures", "compensation", "approval_id"):
            if name in values:
                setattr(state, name, values[name])
        if wake_at is not None:
            state.wake_at = wake_at

    async def fail_step(self, step_id: str, error: dict[str, Any]) -> None:
        await self.set_step(step_id, status="failed", error=error)
        self.fail_run(step_id, error)
        self.event("step.failed", {"step_id": step_id, "error": error})

    def fail_run(self, step_id: str, error: dict[str, Any]) -> None:
        if self.failure is None:
            message = error.get("message", "failed")
            self.failure = {
                "code": "step_failed",
                "step": step_id,
                "message": f"step {step_id} failed: {message}",
                "cause": error,
            }

    def event(self, kind: str, payload: dict[str, Any], *, defer: bool = False) -> None:
        """Queues an audit event. ``defer``: hold it until the next event, so the two
        go in one audit batch; a step.started queued on its own would make the step's
        own call.attempt wait for one more commit in front of it."""
        self._deferred.append((kind, payload))
        if not defer:
            events, self._deferred = self._deferred, []
            self.deps.events(events, self.run_id, self.submitter.sub)

    def reverse_order(self) -> list[str]:
        return list(reversed(list(order(self.plan))))


def error_dict(error: Any, fallback: str) -> dict[str, Any]:
    if isinstance(error, GatewayError):
        return error.to_dict()
    return {"code": "error", "message": fallback}
