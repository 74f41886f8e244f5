"""Running a plan offline: the DAG walked in order, every decision asked of policy, every
tool result taken from a recording — no upstream is called, nothing is written.

What a real run does that this does not: retries and timeouts (a recorded error fails
the step at once), compensation, timers (a sleep succeeds), and humans (an approval
gate, and a step whose call needs approval, count as approved and are reported as
needing approval). Branches (``when``), skips and argument templates behave as in the
runner, with the same expression code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.executor.expressions import condition_holds, render
from gateway.executor.plan import ApprovalStep, Plan, SleepStep, ToolStep, order

# Decides one step's call: (tool, rendered arguments, step id) -> the decision.
DecideCall = Callable[[str, dict[str, Any], str], Awaitable[Any]]


class Recording(Protocol):
    """What a tool step's call returned: ``output``, or ``error`` (a dict with ``code``
    and ``message``; a recording that cannot be used is an error too)."""

    @property
    def output(self) -> Any: ...

    @property
    def error(self) -> Mapping[str, Any] | None: ...


# The recording of one step's call: (step id, tool, rendered arguments, the decision) ->
# the recording, or None when there is none.
LookUp = Callable[[str, str, dict[str, Any], Any], Recording | None]


def by_step(results: Mapping[str, Recording]) -> LookUp:
    """Recordings by step id alone (a scenario's ``results``)."""
    return lambda step_id, _tool, _arguments, _decision: results.get(step_id)


DONE = ("succeeded", "skipped")


async def simulate(
    plan: Plan,
    inputs: dict[str, Any],
    results: LookUp,
    decide: DecideCall,
) -> dict[str, Any]:
    """``{"status": "succeeded" | "failed", "error", "steps": {id: {status, arguments,
    decision, approval_needed, output, error}}}``. ``results`` finds a tool step's
    recording (`by_step` for a scenario's)."""
    steps: dict[str, dict[str, Any]] = {}
    context: dict[str, Any] = {"inputs": inputs, "steps": {}}
    failure: dict[str, Any] | None = None
    for step_id in order(plan):
        step = plan.step(step_id)
        if failure is not None:
            steps[step_id] = {"status": "not_run"}
            continue
        needs = [steps[n]["status"] for n in step.needs]
        try:
            skipped = (
                "skipped" in needs if step.when is None else not condition_holds(step.when, context)
            )
            state = (
                {"status": "skipped"}
                if skipped
                else await _run_step(step, context, results, decide)
            )
        except GatewayError as error:
            state = {"status": "failed", "error": error.to_dict()}
        steps[step_id] = state
        context["steps"][step_id] = {"output": state.get("output"), "status": state["status"]}
        if state["status"] == "failed":
            cause = state.get("error") or {}
            failure = {
                "code": "step_failed",
                "step": step_id,
                "message": f"step {step_id} failed: {cause.get('message', 'failed')}",
                "cause": cause,
            }
    return {
        "status": "failed" if failure else "succeeded",
        "error": failure,
        "steps": steps,
    }


async def _run_step(
    step: Any, context: dict[str, Any], results: LookUp, decide: DecideCall
) -> dict[str, Any]:
    if isinstance(step, SleepStep):
        return {"status": "succeeded", "output": None}
    if isinstance(step, ApprovalStep):
        output = {"approved_by": "scenario", "decided_at": None, "reason": None}
        return {"status": "succeeded", "output": output, "approval_needed": True}
    assert isinstance(step, ToolStep)
    arguments = render(step.arguments, context)
    decision = await decide(step.tool, arguments, step.id)
    state: dict[str, Any] = {
        "arguments": arguments,
        "decision": {k: decision.to_dict()[k] for k in ("allow", "require_approval", "rule")},
        "approval_needed": bool(decision.allow and decision.require_approval),
    }
    if not decision.allow:
        reasons = "; ".join(decision.reasons) or "denied by policy"
        return {**state, "status": "failed", "error": {"code": "denied", "message": reasons}}
    recorded = results(step.id, step.tool, arguments, decision)
    if recorded is None:
        error = {"code": "no_recording", "message": "diverged, no recording of this call"}
        return {**state, "status": "failed", "error": error}
    if recorded.error is not None:
        return {**state, "status": "failed", "error": dict(recorded.error)}
    return {**state, "status": "succeeded", "output": recorded.output}
