"""The one call path (architecture.md §2). Every surface hands its operations to `Pipeline`.

    check the document → resolve the target (pins) → validate arguments → decide
        → audit(attempt + decision) → forward to upstream → audit(outcome) → outcome

An operation is any MCP request that reaches an upstream: ``tools/call``,
``resources/read``, ``resources/subscribe``, ``prompts/get`` or
``completion/complete`` (`gateway.operations.Operation`); what differs per method — how
the target is resolved and its arguments checked, what policy sees, how it is
forwarded, what the outcome record adds — is the target's
(`gateway.upstreams.targets`), never a second path. The audit kinds are the same for
every method (``call.attempt``, ``call.decision``, ``call.outcome``, the
attempt naming the method), so the verifier's call-trace rules hold for all of them.

The order is the security argument:
- arguments are validated before policy, so policy reasons about well-formed input;
- nothing is forwarded until the attempt and the decision are durable (§9.2); if the
  audit log cannot commit, the call fails and the upstream never sees it;
- a decision that is not an unconditional allow is never forwarded (§9.1), except a
  "require approval" allow of a ``tools/call`` whose approval — bound to this
  principal, tool and argument hash — a human approved and whose decision is durable
  in the audit log; such a call runs once, and retries get the recorded outcome
  (§9.4). Other methods needing approval are refused (holds are for tool calls);
- the agent's token never reaches this module: upstream headers come from the
  upstream's own credential provider (§9.3);
- a call whose decision carries limits is held or forwarded only once every limit
  admitted it, counted in the shared database (`gateway.limits`); a limit reached is
  answered ``CallLimited`` and audited as ``call.limited``; counters that cannot be
  reached refuse the call (``LimitsUnavailable``), never let it through uncounted.

Authentication happens before the pipeline (the surfaces share one authenticator),
because an unauthenticated request has no principal to build an `Operation` for.

What a principal may see of the catalog (``tools/list``, ``prompts/list``,
``resources/list``) is `gateway.lists`, beside this module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import anyio

from gateway import telemetry
from gateway.approvals.gate import Approvals, pass_gate
from gateway.audit import AuditLog, AuditRecord
from gateway.call_records import (
    attempt_and_decision,
    checked_result,
    not_forwarded,
    submit_outcome,
)
from gateway.canonical import NotIJson, check_document
from gateway.errors import (
    ApprovalRequired,
    AuditCommitUnknown,
    AuditUnavailable,
    CallDenied,
    CallLimited,
    ClientInputRefused,
    GatewayError,
    InvalidArguments,
    LimitsUnavailable,
    PolicyUnavailable,
    UpstreamError,
)
from gateway.limits import Limiter
from gateway.lists import Lists
from gateway.logs import REQUEST_ID
from gateway.metrics import AUDIT_APPEND_SECONDS, calls_series, upstream_series
from gateway.operations import Operation
from gateway.policy import build_input
from gateway.policy.decider import Decider
from gateway.types import (
    GATEWAY_ENGINE,
    UNAVAILABLE_RULE,
    Decision,
    McpResult,
    Outcome,
    OutcomeStatus,
    ToolResult,
    UpstreamTask,
    deny,
)
from gateway.upstreams.catalog import Catalog, Target

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        *,
        catalog: Catalog,
        decider: Decider,
        audit: AuditLog,
        approvals: Approvals,
        limiter: Limiter,
    ) -> None:
        self.catalog = catalog
        self.decider = decider
        self.audit = audit
        self.approvals = approvals
        self.limiter = limiter
        # What a principal may see of the catalog (tools/list, prompts/list, …).
        self.lists = Lists(catalog, decider)

    # --- tools/call, resources/read, prompts/get, completion/complete ----------------

    async def call(self, call: Operation) -> Outcome:
        started = time.perf_counter()
        # Set here, not only by the HTTP middleware: the MCP SDK runs handlers in tasks
        # that do not inherit the request's context.
        context = REQUEST_ID.set(call.request_id)
        try:
            return self._finish(call, await self._call(call), started)
        finally:
            REQUEST_ID.reset(context)

    async def redecide(self, call: Operation) -> bool:
        """Decides again a standing permission ``call`` was granted (a resource
        subscription) after the policy changed: True if it still holds. A denial is
        recorded (attempt + decision) like any refused call, and nothing is forwarded;
        an allowance changes nothing and is not recorded. A target gone from the
        catalog, or a decision that needs approval, does not hold. Raises
        `PolicyUnavailable` or `AuditUnavailable` when nothing could be decided or
        recorded (the caller keeps the permission and asks again later)."""
        try:
            target = self.catalog.resolve_target(call.method, call.target)
        except GatewayError:
            return False
        policy_input = _policy_input(call, target)
        decision = await self.decider.decide(policy_input)
        if decision.permits_now:
            return True
        failure = await self._record_decision(call, target, decision, policy_input)
        if failure is not None and failure.error is not None:
            raise failure.error
        return False

    def _finish(self, call: Operation, outcome: Outcome, started: float) -> Outcome:
        calls_series(call.transport, outcome.status.value).inc()
        log.info(
            "%s %s %s: %s",
            call.transport,
            call.method,
            call.target,
            outcome.status.value,
            extra={
                "method": call.method,
                "tool": call.target,
                "status": outcome.status.value,
                "sub": call.principal.sub,
                "transport": call.transport,
                "error": outcome.error.code if isinstance(outcome.error, GatewayError) else None,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        return outcome

    async def _call(self, call: Operation) -> Outcome:
        # Before anything reads the arguments: a value outside I-JSON is refused here
        # (and recorded withheld), never met by the schema check, policy or the log.
        unacceptable = _arguments_problem(call.arguments)
        try:
            target = self.catalog.resolve_target(call.method, call.target)
            if unacceptable is not None:
                raise unacceptable
            target.validate(call.arguments)
        except GatewayError as exc:
            # Refused before policy: still recorded, as a decision by the gateway itself.
            decision = deny(exc.message, engine=GATEWAY_ENGINE, revision=self.decider.revision)
            recorded = await self._record_decision(
                call, None, decision, None, hashable=unacceptable is None
            )
            return recorded or _refused(call, decision, exc)

        policy_input = _policy_input(call, target)
        try:
            decision = await self.decider.decide(policy_input)
        except PolicyUnavailable as overloaded:
            # Not a decision: nothing was decided. Recorded as such, and answered 503.
            unavailable = deny(
                overloaded.message, engine=self.decider.engine.name, revision=self.decider.revision
            )
            unavailable = replace(unavailable, rule=UNAVAILABLE_RULE)
            failure = await self._record_decision(call, target, unavailable, None)
            return failure or Outcome(
                call.request_id, call.target, OutcomeStatus.ERROR, unavailable, error=overloaded
            )
        failure = await self._record_decision(call, target, decision, policy_input)
        if failure is not None:
            return failure

        if not decision.allow:
            return _refused(call, decision, CallDenied(_reason_text(decision, "denied by policy")))
        if decision.obligations.limits:
            return await self._within_limits(call, target, decision)
        return await self._allowed(call, target, decision)

    async def _within_limits(self, call: Operation, target: Target, decision: Decision) -> Outcome:
        """An allowed call under its decision's limits: counted before it is held or
        forwarded (a limited call never spends an approval), its concurrency slots
        freed when it ends."""
        try:
            admission = await self.limiter.admit(decision.obligations.limits, call.request_id)
        except CallLimited as limited:
            failure = await self._record_limited(call, decision, limited)
            return failure or Outcome(
                call.request_id, call.target, OutcomeStatus.ERROR, decision, error=limited
            )
        except LimitsUnavailable as unavailable:
            # Like an upstream that cannot be reached: the allowed call's outcome is an
            # error, and it was not forwarded.
            self._submit_outcome(
                call,
                {
                    "request_id": call.request_id,
                    "status": "error",
                    "duration_ms": 0.0,
                    "error": unavailable.to_dict(),
                },
            )
            return Outcome(
                call.request_id, call.target, OutcomeStatus.ERROR, decision, error=unavailable
            )
        try:
            return await self._allowed(call, target, decision)
        finally:
            # Even when the caller went away: a slot left behind counts until its lease.
            with anyio.CancelScope(shield=True):
                await admission.release()

    async def _record_limited(
        self, call: Operation, decision: Decision, limited: CallLimited
    ) -> Outcome | None:
        """``call.limited``, durable before the caller is answered (a known principal's
        refusals are always in the log); an `Outcome` if the log cannot take it."""
        record = AuditRecord(
            "call.limited",
            call.request_id,
            {"request_id": call.request_id, **limited.details},
            call.principal.sub,
            call.target,
        )
        try:
            await self.audit.append(record)
        except AuditUnavailable as exc:
            log.error("call.limited of %s not recorded: %s", call.request_id, exc.message)
            return Outcome(call.request_id, call.target, OutcomeStatus.ERROR, decision, error=exc)
        return None

    async def _allowed(self, call: Operation, target: Target, decision: Decision) -> Outcome:
        if decision.require_approval:
            if target.method != "tools/call":
                # Holds are bound to a tool and its arguments, and replay a tool result;
                # a read or a prompt that policy wants approved is refused, not held.
                reason = _reason_text(decision, "approval required")
                return _refused(
                    call,
                    decision,
                    ApprovalRequired(
                        f"{reason}; approval holds are for tools/call only, so this "
                        f"{call.method} was not executed"
                    ),
                )
            # A held call runs as a plain call once approved: its outcome is recorded on
            # the approval, so it is never an upstream's task (docs/decisions/0030).
            call = replace(call, task=None)
            return await pass_gate(
                self.approvals,
                call,
                target.definition,
                decision,
                forward=lambda approval_id: self._forward(
                    call, target, decision, approval_id=approval_id
                ),
                record_outcome=self._submit_outcome,
            )
        return await self._forward(call, target, decision)

    async def _record_decision(
        self,
        call: Operation,
        target: Target | None,
        decision: Decision,
        policy_input: dict[str, Any] | None,
        *,
        hashable: bool = True,
    ) -> Outcome | None:
        """Appends attempt + decision in one durable transaction; an `Outcome` on failure.
        What of the arguments is recorded is `gateway.recording`'s to say; arguments
        that are not ``hashable`` (refused as not I-JSON) are recorded without a hash."""
        records = attempt_and_decision(call, target, decision, policy_input, hashable=hashable)
        appending = time.perf_counter()
        try:
            await self.audit.append(*records)
        except AuditUnavailable as exc:
            log.error(
                "audit append failed; call %s not forwarded: %s", call.request_id, exc.message
            )
            if isinstance(exc, AuditCommitUnknown):
                # The log may hold the attempt and its allowing decision after all: say
                # that the call never ran, once the log can be written again (kept and
                # retried like every outcome), rather than leave its outcome unknown.
                self._submit_outcome(call, not_forwarded(call, exc))
            return Outcome(call.request_id, call.target, OutcomeStatus.ERROR, decision, error=exc)
        AUDIT_APPEND_SECONDS.observe(time.perf_counter() - appending)
        return None

    async def _forward(
        self,
        call: Operation,
        target: Target,
        decision: Decision,
        *,
        approval_id: str | None = None,
    ) -> Outcome:
        started = time.perf_counter()
        headers = target.credentials.headers_for(call.principal)
        if call.trace is not None:  # traced: the upstream joins the trace, under this call
            headers = telemetry.propagate(headers)
        error: GatewayError | None = None
        answer: ToolResult | McpResult | UpstreamTask | None = None
        try:
            answer = await target.forward(call, headers)
        except (UpstreamError, ClientInputRefused) as exc:
            error = exc
        elapsed = time.perf_counter() - started
        upstream_series(target.config.name).observe(elapsed)
        if isinstance(answer, UpstreamTask):
            # The upstream runs the call as its task: the outcome is recorded when the
            # task's result is first fetched (`record_task_outcome`), never here.
            return Outcome(call.request_id, call.target, OutcomeStatus.OK, decision, result=answer)
        result, error, outcome_payload = checked_result(call, target, answer, error, elapsed)
        if approval_id is not None:
            outcome_payload["approval_id"] = approval_id
        self._submit_outcome(call, outcome_payload)

        if error is not None:
            return Outcome(call.request_id, call.target, OutcomeStatus.ERROR, decision, error=error)
        return Outcome(call.request_id, call.target, OutcomeStatus.OK, decision, result=result)

    def record_task_outcome(
        self,
        call: Operation,
        result: ToolResult | None,
        error: GatewayError | None,
        *,
        record: bool,
        fields: dict[str, Any],
    ) -> tuple[ToolResult | McpResult | None, GatewayError | None]:
        """The result of a call an upstream ran as its task (docs/decisions/0030), as it
        may be passed on; its ``call.outcome`` is queued when ``record`` (the caller
        won the task's one recording: the first fetch of its result)."""
        checked, error, payload = checked_result(call, None, result, error, None)
        if record:
            self._submit_outcome(call, {**payload, **fields})
        return checked, error

    def _submit_outcome(self, call: Operation, payload: dict[str, Any]) -> None:
        submit_outcome(self.audit, call, payload)


def _policy_input(call: Operation, target: Target) -> dict[str, Any]:
    return build_input(
        principal=call.principal,
        action=call.method,
        request_id=call.request_id,
        transport=call.transport,
        resource=target.policy_resource(),
        arguments=call.arguments,
        client=call.client,
        run_id=call.run_id,
        step_id=call.step_id,
    )


def _arguments_problem(arguments: dict[str, Any]) -> InvalidArguments | None:
    """The refusal of arguments outside I-JSON, naming where and why; None if fine."""
    try:
        check_document(arguments)
    except NotIJson as problem:
        where = f"arguments{problem.pointer}" if problem.pointer else "arguments"
        return InvalidArguments(
            f"{where}: {problem.reason}",
            details={"pointer": problem.pointer, "reason": problem.reason},
        )
    return None


def _reason_text(decision: Decision, fallback: str) -> str:
    return "; ".join(decision.reasons) if decision.reasons else fallback


def _refused(call: Operation, decision: Decision, error: GatewayError) -> Outcome:
    return Outcome(call.request_id, call.target, OutcomeStatus.DENIED, decision, error=error)
