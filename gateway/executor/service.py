"""`Executor`: submitting plans (a policy decision), reading and cancelling runs, and
the workers of this process.

Submission order, each step able to stop it with nothing changed (architecture.md §9.6):
parse → validate against the catalog → check inputs → (same idempotency key: the
existing run) → policy decision ``plan/submit`` with the whole plan → durable
``run.submitted`` (or ``run.refused``) audit entry → the run row. A run exists only
once the decision that allowed it is in the audit log.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio

from gateway import telemetry
from gateway.audit import AuditRecord
from gateway.errors import GatewayError
from gateway.executor import records
from gateway.executor.deps import ExecutorDeps
from gateway.executor.errors import InputsInvalid, PlanInvalid, PlanRefused, WorkflowDrifted
from gateway.executor.plan import Plan, load_plan_text, parse_plan
from gateway.executor.review import request_review, review_needed
from gateway.executor.schedules import Schedules
from gateway.executor.validation import check_inputs, validate_plan
from gateway.executor.worker import Worker, running_workers
from gateway.executor.workflow_ref import WorkflowRef, check_drift
from gateway.policy import build_input
from gateway.recording import recordable
from gateway.types import GATEWAY_ENGINE, ClientInfo, Decision, Principal, Transport, deny
from gateway.version import __version__


class Executor:
    def __init__(self, deps: ExecutorDeps) -> None:
        self.deps = deps
        self.store = deps.store
        self.workers: list[Worker] = []
        self.schedules = Schedules(self)

    # --- submitting -------------------------------------------------------------------

    async def submit(
        self,
        principal: Principal,
        plan: Plan | dict[str, Any] | str,
        inputs: Any = None,
        *,
        idempotency_key: str | None = None,
        request_id: str,
        transport: Transport,
        client: ClientInfo | None = None,
        schedule_id: str | None = None,
        workflow: WorkflowRef | None = None,
    ) -> tuple[str, bool]:
        """Creates a run, or returns the one this key already created. ``plan`` is a
        `Plan`, its decoded JSON/YAML, or JSON/YAML text; ``workflow`` the published
        workflow it comes from (None: an ad hoc plan). Returns ``(run_id, created)``.
        Raises `PlanInvalid`, `InputsInvalid`, `WorkflowDrifted`, `PlanRefused`,
        `IdempotencyConflict` or `AuditUnavailable`, having changed nothing but the
        audit log, where a refused submission is recorded (by the gateway's checks, or
        by policy). A plan that policy (or its workflow) wants reviewed is created
        waiting for that review (`gateway.executor.review`)."""
        config = self.deps.config
        inputs = {} if inputs is None else inputs
        try:
            if not isinstance(inputs, dict):
                raise InputsInvalid("inputs must be a JSON object")
            if isinstance(plan, str):
                plan = load_plan_text(plan)
            elif not isinstance(plan, Plan):
                plan = parse_plan(plan)
            if workflow is not None:
                # Before validation, so a drifted tool is named as such.
                check_drift(workflow, self.deps.catalog)
            validate_plan(plan, self.deps.catalog, max_steps=config.max_steps)
            check_inputs(plan, inputs)
        except (PlanInvalid, InputsInvalid, WorkflowDrifted) as refusal:
            await self._record_refused_submission(
                principal,
                plan,
                inputs,
                refusal,
                request_id=request_id,
                transport=transport,
                workflow=workflow,
            )
            raise
        if idempotency_key:
            existing = await self._db(records.find_existing, self.store, principal, idempotency_key)
            if existing is not None:
                records.check_same_submission(existing, plan.plan_hash, inputs)
                return existing.id, False
        run_id = records.new_run_id()
        provenance, decision, shown = await self._decide(
            principal,
            plan,
            inputs,
            request_id=request_id,
            transport=transport,
            client=client,
            run_id=run_id,
            schedule_id=schedule_id,
            workflow=workflow,
        )
        deadline_s = min(plan.deadline_s or config.max_run_s, config.max_run_s)
        max_calls = min(plan.max_tool_calls or config.max_tool_calls, config.max_tool_calls)
        review = review_needed(decision, workflow)
        review_approval = None
        if review is not None:
            review_approval = await request_review(
                self.deps.approvals,
                review,
                submitter=principal,
                run_id=run_id,
                plan_hash=plan.plan_hash,
                shown=shown,
                decision=decision,
                request_id=request_id,
                transport=transport,
            )
        run_id, created = await self._db(
            records.insert_run,
            self.store,
            run_id=run_id,
            plan=plan,
            inputs=inputs,
            principal=principal,
            idempotency_key=idempotency_key or f"auto:{run_id}",
            request_id=request_id,
            provenance=provenance,
            deadline_s=deadline_s,
            max_tool_calls=max_calls,
            schedule_id=schedule_id,
            review_approval_id=review_approval.id if review_approval else None,
        )
        if created:
            self.deps.doorbell.ring()
        return run_id, created

    async def _record_refused_submission(
        self,
        principal: Principal,
        plan: Any,
        inputs: Any,
        refusal: GatewayError,
        *,
        request_id: str,
        transport: Transport,
        workflow: WorkflowRef | None = None,
    ) -> None:
        """``run.refused`` for a submission the gateway's own checks refused (a
        decision by the gateway, as for a call: docs/decisions/0004). No policy said
        what to redact, so the plan's arguments and the inputs are withheld."""
        document = plan.to_json() if isinstance(plan, Plan) else plan
        decision = deny(refusal.message, engine=GATEWAY_ENGINE, revision=self.deps.decider.revision)
        shown = recordable({"resource": {"plan": document}, "arguments": inputs}, decision)
        payload = {
            "request_id": request_id,
            "transport": transport,
            "principal": principal.to_audit(),
            "plan": shown["resource"]["plan"],
            "inputs": shown["arguments"],
            "decision": decision.to_dict(),
            "error": refusal.to_dict(),
            "workflow": workflow.to_policy() if workflow else None,
        }
        await self.deps.audit.append(AuditRecord("run.refused", request_id, payload, principal.sub))

    async def decide_submission(
        self,
        principal: Principal,
        plan: Plan,
        inputs: dict[str, Any],
        *,
        request_id: str,
        transport: Transport,
        client: ClientInfo | None = None,
        run_id: str | None,
        schedule_id: str | None = None,
    ) -> dict[str, Any]:
        """The ``plan/submit`` decision, durably audited (``run.submitted`` or
        ``run.refused``; ``schedule.*`` when registering a schedule). Returns the
        provenance of an allowed plan; raises `PlanRefused` otherwise."""
        provenance, _, _ = await self._decide(
            principal,
            plan,
            inputs,
            request_id=request_id,
            transport=transport,
            client=client,
            run_id=run_id,
            schedule_id=schedule_id,
        )
        return provenance

    async def _decide(
        self,
        principal: Principal,
        plan: Plan,
        inputs: dict[str, Any],
        *,
        request_id: str,
        transport: Transport,
        client: ClientInfo | None,
        run_id: str | None,
        schedule_id: str | None,
        workflow: WorkflowRef | None = None,
    ) -> tuple[dict[str, Any], Decision, dict[str, Any]]:
        """`decide_submission`, returning also the decision and the policy input as it
        may be recorded."""
        tools = {name: self.deps.catalog.resolve(name).definition for name in sorted(plan.tools())}
        policy_input = build_input(
            principal=principal,
            action="plan/submit",
            request_id=request_id,
            transport=transport,
            resource={
                "plan": plan.to_json(),
                "plan_hash": plan.plan_hash,
                "tools": {name: t.to_policy_resource() for name, t in tools.items()},
                "schedule_id": schedule_id,
                # The published workflow the plan comes from; null for an ad hoc plan.
                "workflow": workflow.to_policy() if workflow else None,
            },
            arguments=inputs,
            client=client,
            run_id=run_id,
        )
        decision = await self.deps.decider.decide(policy_input)
        provenance = {
            "plan_hash": plan.plan_hash,
            "policy_engine": decision.engine,
            "policy_revision": decision.revision,
            "decision_id": decision.decision_id,
            "tools": {name: t.definition_hash for name, t in tools.items()},
            "gateway_version": __version__,
            "submitted_by": principal.to_audit(),
            "request_id": request_id,
            "transport": transport,
            "steps_need_approval": decision.require_approval
            and not decision.obligations.plan_review,
            "workflow": workflow.to_policy() if workflow else None,
        }
        submitted_in = telemetry.sampled_span()
        if submitted_in is not None:  # traced: each execution's span links back to it
            provenance["trace"] = submitted_in
        shown = recordable(policy_input, decision)
        prefix = "run" if run_id else "schedule"
        ref = run_id or schedule_id or request_id
        payload = {
            f"{prefix}_id": ref,
            "principal": principal.to_audit(),
            "plan": shown["resource"]["plan"],
            "inputs": shown["arguments"],
            "decision": decision.to_dict(),
            "provenance": provenance,
        }
        # "Allowed once approved" for a plan means: the steps whose tools need approval
        # wait for it when they run. Each is decided again as a tools/call and held by
        # the pipeline until a human approves that very call, so accepting the plan
        # lets nothing run unapproved.
        kind = f"{prefix}.submitted" if decision.allow else f"{prefix}.refused"
        await self.deps.audit.append(AuditRecord(kind, ref, payload, principal.sub))
        if not decision.allow:
            reasons = "; ".join(decision.reasons) or "denied by policy"
            raise PlanRefused(f"plan refused: {reasons}", details={"decision": decision.to_dict()})
        return provenance, decision, shown

    # --- reading and cancelling -----------------------------------------------------------

    async def get(self, run_id: str, viewer: Principal | None) -> dict[str, Any]:
        row = await self._db(records.load_run, self.store, run_id, self._reader(viewer))
        return await self._db(records.run_view, self.store, row)

    async def list(
        self, viewer: Principal | None, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return await self._db(
            records.list_runs, self.store, self._reader(viewer), status=status, limit=limit
        )

    def _reader(self, viewer: Principal | None) -> Principal | None:
        """Whose runs ``viewer`` may read: every run (``None``) for the operator and for
        holders of one of ``executor.viewer_roles`` (approvers, by default, so runs
        show in the console); otherwise only its own. Cancelling never uses this."""
        if viewer is not None and set(viewer.roles) & set(self.deps.config.viewer_roles):
            return None
        return viewer

    async def cancel(self, run_id: str, viewer: Principal | None) -> str:
        """Cancels (or asks the owning worker to cancel) a run; returns its status."""
        row = await self._db(records.load_run, self.store, run_id, viewer)
        status = await self._db(records.request_cancel, self.store, run_id)
        by = viewer.sub if viewer else "operator"
        if status == "cancelled":
            self.deps.event(
                "run.cancelled", run_id, {"status": "cancelled", "by": by}, row.submitted_by
            )
        else:
            self.deps.event("run.cancel_requested", run_id, {"by": by}, row.submitted_by)
        return status

    # --- workers --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, workers: int | None = None) -> AsyncIterator[Executor]:
        count = self.deps.config.workers if workers is None else workers
        try:
            if count == 0:
                yield self
                return
            async with running_workers(self.deps, count, self.schedules.fire_due) as started:
                self.workers = started
                yield self
        finally:
            self.store.close()

    async def _db(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))


def new_idempotency_key() -> str:
    return "key_" + secrets.token_hex(12)
