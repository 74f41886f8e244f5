"""Executing one claimed run until it finishes, waits, or its lease is lost.

`RunExecution` loads the run, settles its plan's review, holds its lease (a heartbeat)
while its steps are driven (`gateway.executor.driver.RunDriver`), and concludes: the
run succeeds, is cancelled, fails (its completed steps compensated) or waits. What it
holds, and the one place a step's state changes, are `gateway.executor.run_state`'s.

When only waiting is left (a timer, a retry backoff, an approval), the run is
released: no lease, no thread, no task, no writes; ``wake_at`` on the database clock
(the earliest timer, or the run's deadline) says when any worker may claim it again,
and so does the decision of an approval it waits for. When its lease is lost
(`LeaseLost`), the runner stops at once without writing anything more: the new owner
carries on from the database.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from gateway import telemetry
from gateway.executor import progress, review
from gateway.executor import steps as step_logic
from gateway.executor.driver import RunDriver
from gateway.executor.errors import only_lease_lost
from gateway.executor.plan import Plan, order, parse_plan
from gateway.executor.records import executor_principal, principal_from_json
from gateway.executor.step_state import StepState, StepStatus

log = logging.getLogger(__name__)


class RunExecution(RunDriver):
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

    async def _compensate(self) -> None:
        """Undoes the completed steps of a failed run, dependents first (saga). One
        compensation that fails is recorded and the others still run."""
        for step_id in reversed(list(order(self.plan))):
            change = await step_logic.compensate_step(self, step_id)
            if change is not None:
                await self.apply(change)

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
