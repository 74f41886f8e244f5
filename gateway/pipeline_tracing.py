"""The call path with spans: `TracedPipeline`, which `components.py` builds instead of
`Pipeline` while tracing is on (gateway/telemetry.py).

A subclass rather than spans inside `Pipeline`: off, the call path must not pay for
tracing at all, not even for entering a do-nothing context manager five times a call
(about 0.8 µs each here). It adds spans around the pipeline's own steps and changes
nothing they do; the order and the checks stay `Pipeline`'s (architecture.md §2).

    <method> <target>          the call (a child of the caller's trace, `Operation.trace`)
      gateway.policy.decide    (`gateway.policy.decider.TracedDecider`)
      gateway.audit.append     attempt + decision durable
      gateway.approval.wait    a hold (`gateway.approvals.gate`)
      upstream <method>        the forward; the upstream's parent

A traced call reaches `Pipeline` with ``trace`` set to its own span's context, which
is how `Pipeline` knows to name the trace in the attempt's audit entry and to pass
the trace context on to the upstream.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway import telemetry
from gateway.errors import GatewayError
from gateway.operations import Operation
from gateway.pipeline import Pipeline
from gateway.types import Decision, Outcome, OutcomeStatus
from gateway.upstreams.catalog import Target


class TracedPipeline(Pipeline):
    async def call(self, call: Operation) -> Outcome:
        with telemetry.span(call.method, call.target, parent=call.trace) as span:
            outcome = await super().call(replace(call, trace=telemetry.current()))
            if span is not None:
                telemetry.annotate(span, _call_attributes(call, outcome))
                if outcome.status is OutcomeStatus.ERROR:
                    telemetry.fail(span, _error_code(outcome) or "error")
        return outcome

    async def _record_decision(
        self,
        call: Operation,
        target: Target | None,
        decision: Decision,
        policy_input: dict[str, Any] | None,
        *,
        hashable: bool = True,
    ) -> Outcome | None:
        with telemetry.span("gateway.audit.append") as span:
            failure = await super()._record_decision(
                call, target, decision, policy_input, hashable=hashable
            )
            if failure is not None:
                telemetry.fail(span, _error_code(failure) or "audit unavailable")
        return failure

    async def _forward(
        self,
        call: Operation,
        target: Target,
        decision: Decision,
        *,
        approval_id: str | None = None,
    ) -> Outcome:
        with telemetry.span("upstream", call.method, kind="client") as span:
            if span is not None:
                telemetry.annotate(
                    span,
                    {
                        "gateway.upstream": target.config.name,
                        "gateway.upstream.target": target.name,
                    },
                )
            # Current while `Pipeline._forward` sends: the upstream's parent.
            outcome = await super()._forward(call, target, decision, approval_id=approval_id)
            if outcome.status is OutcomeStatus.ERROR:
                telemetry.fail(span, _error_code(outcome) or "error")
        return outcome


def _error_code(outcome: Outcome) -> str | None:
    return outcome.error.code if isinstance(outcome.error, GatewayError) else None


def _call_attributes(call: Operation, outcome: Outcome) -> dict[str, Any]:
    return {
        "mcp.method.name": call.method,
        "gateway.target": call.target,
        "gateway.request_id": call.request_id,
        "gateway.transport": call.transport,
        "gateway.principal": call.principal.sub,
        "gateway.run_id": call.run_id,
        "gateway.step_id": call.step_id,
        "gateway.status": outcome.status.value,
        "gateway.policy.rule": outcome.decision.rule if outcome.decision else None,
        "error.type": _error_code(outcome),
    }
