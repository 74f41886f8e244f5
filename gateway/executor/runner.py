"""Executing one claimed run until it finishes, waits, or its lease is lost.

The runner drives the DAG: it starts every step whose needs are done (up to
``max_parallel_steps`` at once), skips those whose ``when`` is false, and hands each
tool call to the one pipeline under the submitter's identity with the executor as
current actor. Each state change is a fenced write (`gateway.executor.progress`), made
through the run's `RunWriter`: one at a time, in the order asked for; a step's success
is carried by the next write (see `gateway.executor.writer`), while the runner's own
state says "succeeded" at once, so dependents start without waiting.

The runner is the only code that changes a step's state (`StepState`, frozen): the
step logic (`steps`, `gates`) sees the run as a `RunView` and returns a `Transition`
saying what happened to the step, which `apply` writes, mirrors and audits.

A tool step that a success made ready is run by the same task, at once (`_successor`);
the driver wakes for what else became ready. A chain of steps thus goes from one call
to the next without a trip through the driver.

When only waiting is left (a timer, a retry backoff, an approval), the run is
released: no lease, no thread, no task, no writes; ``wake_at`` on the database clock
(the earliest timer, or the run's deadline) says when any worker may claim it again,
and so does the decision of an approval it waits for. When its lease is lost
(`LeaseLost`), the runner stops at once without writing anything more: the new owner
carries on from the database.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any, TypeVar

import anyio
import anyio.abc

from gateway import telemetry
from gateway.executor import gates, progress, review
from gateway.executor import steps as step_logic
from gateway.executor.deps import ExecutorDeps
from gateway.executor.errors import ExpressionError, LeaseLost, only_lease_lost
from gateway.executor.expressions import condition_holds
from gateway.executor.plan import ApprovalStep, Plan, SleepStep, ToolStep, order, parse_plan
from gateway.executor.records import executor_principal, principal_from_json
from gateway.executor.step_state import (
    DONE,
    FINAL,
    MIRRORED,
    StepState,
    StepStatus,
    Transition,
)
from gateway.executor.store import Claim, StepFinish
from gateway.executor.writer import RunWriter, in_thread

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self.writer = RunWriter(self.store, claim)
        # The fenced writes (`progress` functions), one at a time, in order.
        self.write = self.writer.write
        self._running: set[str] = set()  # tool steps with a task

    async def db(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await in_thread(function, *args, **kwargs)

    # --- the whole run ------------------------------------------------------------------

    async def execute(self) -> str:
        """Runs until the run finishes or waits; returns what happened (``succeeded``,
        ``failed``, ``cancelled``, ``waiting`` or ``lost``)."""
        try:
            with telemetry.span("gateway.run", self.run_id) as span:
                result = await self._execute()
                if span is not None:
                    telemetry.annotate(span, self._span_attributes(result))
                    telemetry.link(span, self.provenance.get("trace"))  # the submission
        except Exception as exc:
            lost = only_lease_lost(exc)
            if lost is None:
                raise
            log.warning("worker %s stops run %s: %s", self.claim.worker, self.run_id, lost.message)
            return "lost"
        return "lost" if self.lost else result

    def _span_attributes(self, result: str) -> dict[str, Any]:
        return {
            "gateway.run_id": self.run_id,
            "gateway.worker": self.claim.worker,
            "gateway.fencing_token": self.claim.token,
            "gateway.run.result": "lost" if self.lost else result,
        }

    async def _execute(self) -> str:
        loaded = await self.db(self.store.load, self.run_id)
        row = loaded.run
        self.plan: Plan = parse_plan(row.plan)
        self.inputs: dict[str, Any] = row.inputs
        self.submitter = principal_from_json(row.principal)
        self.principal = executor_principal(self.submitter)
        self.provenance: dict[str, Any] = row.provenance
        self.deadline_at: float | None = row.deadline_at
        self.cancel_requested = bool(row.cancel_requested)
        self.states = {
            r.step_id: StepState(
                StepStatus(r.status),
                r.output,
                r.failures,
                r.wake_at,
                r.compensation,
                r.approval_id,
                attempts=r.attempts,
                orphaned=r.status == StepStatus.RUNNING,
            )
            for r in loaded.steps
        }
        # Only to decide when to look again; every due-or-not answer comes from the
        # database clock.
        self.clock_offset = loaded.clock - time.time()
        self._dependents: dict[str, list[Any]] = {s.id: [] for s in self.plan.steps}
        for step in self.plan.steps:
            for need in step.needs:
                self._dependents[need].append(step)
        kind = "run.started" if self.claim.token == 1 else "run.resumed"
        self.event(kind, {"worker": self.claim.worker, "fencing_token": self.claim.token})
        if row.review_status == "pending":
            reviewed = await self._settle_review(row.review_approval_id)
            if reviewed != "approved":
                return await self._conclude(reviewed)

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
            # Claimable again at the earliest timer, the run's deadline, or as soon as
            # an approval it waits for is decided (`RunStore.claim`): never to poll.
            await self.write(progress.release, self._until_deadline())
            return "waiting"
        if result == "succeeded":
            await self.write(progress.finish_run, "succeeded", None)
            self.event("run.completed", {"status": "succeeded"})
            return result
        if result == "cancelled":
            error = {"code": "cancelled", "message": "cancelled on request"}
            await self.write(progress.finish_run, "cancelled", error)
            self.event("run.cancelled", {"status": "cancelled"})
            return result
        await self._compensate()
        await self.write(progress.finish_run, "failed", self.failure)
        self.event("run.failed", {"status": "failed", "error": self.failure})
        return "failed"

    async def _settle_review(self, approval_id: str) -> str:
        """The plan's review (`gateway.executor.review`), before any step: ``approved``
        (recorded; the steps run), ``waiting`` (still pending: released again) or
        ``failed`` (denied or expired: the run fails, nothing having run)."""
        approval = await self.deps.approvals.get_fresh(approval_id)
        if approval.status.value == "pending":
            return "waiting"
        failure = review.review_outcome(approval)
        if failure is not None:
            self.failure = failure
            return "failed"
        await self.write(progress.approve_review)
        self.event(
            "run.review_approved",
            {"approval_id": approval.id, "approved_by": approval.decided_by},
        )
        return "approved"

    def _until_deadline(self) -> float | None:
        if self.deadline_at is None:
            return None
        return self.deadline_at - (time.time() + self.clock_offset)

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

    async def _compensate(self) -> None:
        """Undoes the completed steps of a failed run, dependents first (saga). One
        compensation that fails is recorded and the others still run."""
        for step_id in reversed(list(order(self.plan))):
            change = await step_logic.compensate_step(self, step_id)
            if change is not None:
                await self.apply(change)

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
