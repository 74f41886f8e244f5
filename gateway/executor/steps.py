"""What one step does: a tool call through the pipeline (with retries and timeouts),
an approval gate, and the compensations that undo completed steps of a failed run.

A tool step's attempt is recorded before the call and finished after it, both fenced;
a success is finished by the run's next write (`gateway.executor.progress`), and its
``step.completed`` event is queued the moment the call returns, beside the pipeline's
own ``call.outcome`` record, so both go in one audit commit. The idempotency key is
``<run id>:<step id>`` for every attempt of the step (and ``…:compensate`` for its
compensation), so a tool that honours keys applies the effect once however often a
crash makes the executor call it again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from gateway.errors import GatewayError
from gateway.executor import progress
from gateway.executor.errors import ExpressionError
from gateway.executor.expressions import render
from gateway.executor.store import StepFinish
from gateway.logs import new_request_id
from gateway.recording import recordable_arguments
from gateway.types import Operation, Outcome, OutcomeStatus

if TYPE_CHECKING:
    from gateway.executor.plan import ToolStep
    from gateway.executor.runner import RunExecution

log = logging.getLogger(__name__)

RETRYABLE = ("tool_error", "error", "timeout")


class ToolChanged(GatewayError):
    """The tool's definition is not the one recorded when the plan was submitted."""

    code = "tool_changed"
    http_status = 409


async def run_tool_step(run: RunExecution, step: ToolStep) -> None:
    state = run.states[step.id]
    try:
        arguments = render(step.arguments, run.context())
    except ExpressionError as exc:
        await run.fail_step(step.id, exc.to_dict())
        return
    problem = _definition_problem(run, step.tool)
    if problem is not None:
        await run.fail_step(step.id, problem.to_dict())
        return
    key = f"{run.run_id}:{step.id}"
    request_id = new_request_id()
    attempt, calls, cap = await run.write(
        progress.begin_attempt,
        step.id,
        "step",
        request_id,
        key,
        # Known while the run is held, unless a dead worker's attempt may be open.
        previous=None if state.orphaned else state.attempts,
    )
    state.attempts, state.orphaned = attempt, False
    await run.writer.started(step.id)
    if calls > cap:
        error = {"code": "quota_exceeded", "message": f"the run used its {cap} tool calls"}
        finish = StepFinish(step.id, "step", attempt, "refused", error)
        await run.write(progress.finish_attempt, _with(finish, status="failed", error=error))
        state.status = "failed"
        run.failure = {"code": "quota_exceeded", "step": step.id, "message": error["message"]}
        run.event("step.failed", {"step_id": step.id, "error": error})
        return
    run.event(
        "step.started",
        {
            "step_id": step.id,
            "attempt": attempt,
            "request_id": request_id,
            "tool": step.tool,
            "idempotency_key": key,
        },
        defer=True,
    )
    outcome = await call_tool(run, step.tool, arguments, request_id, key, step.id, step.timeout_s)
    status, error = classify(outcome)
    shown = shown_arguments(outcome, arguments)
    decision = outcome.decision.to_dict() if outcome and outcome.decision else None
    pointers = list(outcome.decision.obligations.redact) if outcome and outcome.decision else []
    common = {"arguments": shown, "decision": decision, "redact": pointers}
    finish = StepFinish(step.id, "step", attempt, status, error)
    if status == "ok":
        assert outcome is not None and outcome.result is not None
        output = step_output(outcome)
        # Before any await: queued right behind the pipeline's call.outcome record.
        run.event(
            "step.completed", {"step_id": step.id, "attempt": attempt, "request_id": request_id}
        )
        state.status, state.output = "succeeded", output
        run.defer(_with(finish, status="succeeded", output=output, error=None, **common))
        return
    if status == "pending_approval" and outcome is not None:
        # Held for a human: wait for the decision holding nothing; when approved the
        # step calls again and the pipeline executes it, once (architecture.md §7).
        ttl = outcome.decision.obligations.approval_ttl_s if outcome.decision else None
        state.wake_at = await run.write(
            progress.finish_attempt,
            _with(finish, status="waiting", approval_id=outcome.approval_id, error=error, **common),
            float(ttl or run.deps.config.max_run_s),
        )
        state.status, state.approval_id = "waiting", outcome.approval_id
        run.event("step.waiting", {"step_id": step.id, "approval_id": outcome.approval_id})
        return
    failures = state.failures + 1
    if status in RETRYABLE and failures < step.retry.max_attempts:
        delay = step.retry.delay_s(failures)
        state.wake_at = await run.write(
            progress.finish_attempt,
            _with(finish, status="waiting", failures=failures, error=error, **common),
            delay,
        )
        state.status, state.failures = "waiting", failures
        run.event(
            "step.retrying",
            {"step_id": step.id, "attempt": attempt, "error": error, "retry_in_s": delay},
        )
        return
    await run.write(
        progress.finish_attempt,
        _with(finish, status="failed", failures=failures, error=error, **common),
    )
    state.status, state.failures = "failed", failures
    run.fail_run(step.id, error)
    run.event("step.failed", {"step_id": step.id, "attempt": attempt, "error": error})


def _with(finish: StepFinish, **step_values: Any) -> StepFinish:
    """``finish`` with the step's new columns."""
    return replace(finish, step_values=step_values)


def _definition_problem(run: RunExecution, tool: str) -> GatewayError | None:
    """A tool that is gone, or whose definition changed since the plan was submitted,
    is not called: the plan was decided against the definition in its provenance."""
    try:
        entry = run.deps.catalog.resolve(tool)
    except GatewayError as exc:
        return exc
    expected = run.provenance.get("tools", {}).get(tool)
    if expected and entry.definition.definition_hash != expected:
        return ToolChanged(
            f"the definition of {tool} changed since the plan was submitted",
            details={"expected": expected, "current": entry.definition.definition_hash},
        )
    return None


async def call_tool(
    run: RunExecution,
    tool: str,
    arguments: dict[str, Any],
    request_id: str,
    key: str,
    step_id: str,
    timeout_s: float | None,
) -> Outcome | None:
    """The one pipeline, as the submitter through the executor; ``None`` on timeout."""
    call = Operation(
        principal=run.principal,
        method="tools/call",
        target=tool,
        arguments=arguments,
        transport="executor",
        request_id=request_id,
        run_id=run.run_id,
        step_id=step_id,
        idempotency_key=key,
        # A step needing approval is not held in the pipeline (holding a lease); the
        # run waits for the decision released.
        hold_s=0,
    )
    with anyio.move_on_after(timeout_s if timeout_s is not None else math.inf):
        return await run.deps.pipeline.call(call)
    return None


def classify(outcome: Outcome | None) -> tuple[str, dict[str, Any] | None]:
    """``ok``, a retryable ``tool_error``/``error``/``timeout``, or a final ``denied``."""
    if outcome is None:
        return "timeout", {"code": "step_timeout", "message": "the step did not finish in time"}
    if outcome.status is OutcomeStatus.OK and outcome.result is not None:
        if not outcome.result.is_error:
            return "ok", None
        text = " ".join(
            c.get("text", "") for c in outcome.result.content if c.get("type") == "text"
        )
        return "tool_error", {"code": "tool_error", "message": text or "the tool reported an error"}
    error = (
        outcome.error.to_dict()
        if isinstance(outcome.error, GatewayError)
        else {"code": outcome.status.value, "message": "the call did not succeed"}
    )
    if outcome.status is OutcomeStatus.ERROR:
        return "error", error
    if outcome.status is OutcomeStatus.PENDING_APPROVAL:
        return "pending_approval", {**error, "approval_id": outcome.approval_id}
    return "denied", error


def step_output(outcome: Outcome) -> Any:
    """What ``steps.<id>.output`` is: the structured content, else the text content."""
    assert outcome.result is not None
    if outcome.result.structured_content is not None:
        return outcome.result.structured_content
    texts = [c.get("text", "") for c in outcome.result.content if c.get("type") == "text"]
    return {"text": "\n".join(texts)}


def shown_arguments(outcome: Outcome | None, arguments: dict[str, Any]) -> Any:
    """Arguments as they may be stored (`gateway.recording`)."""
    return recordable_arguments(arguments, outcome.decision if outcome is not None else None)


async def compensate(run: RunExecution) -> None:
    """Undoes the completed steps of a failed run, dependents first (saga). Each
    compensation is a tool call through the pipeline like any step; one that fails is
    recorded and the others still run."""
    for step_id in run.reverse_order():
        step = run.plan.step(step_id)
        state = run.states[step_id]
        compensation = getattr(step, "compensate", None)
        if compensation is None or state.status != "succeeded" or state.compensation:
            continue
        key = f"{run.run_id}:{step_id}:compensate"
        try:
            arguments = render(compensation.arguments, run.context(including=step_id))
        except ExpressionError as exc:
            await run.set_step(step_id, compensation="failed", compensation_error=exc.to_dict())
            continue
        error: dict[str, Any] | None = None
        for failures in range(1, step.retry.max_attempts + 1):
            request_id = new_request_id()
            attempt, _, _ = await run.write(
                progress.begin_attempt, step_id, "compensate", request_id, key
            )
            outcome = await call_tool(
                run, compensation.tool, arguments, request_id, key, step_id, step.timeout_s
            )
            status, error = classify(outcome)
            result = "succeeded" if status == "ok" else None
            if status != "ok" and (status not in RETRYABLE or failures == step.retry.max_attempts):
                result = "failed"
            values: dict[str, Any] = {"compensation": result} if result else {}
            if result == "failed":
                values["compensation_error"] = error
            await run.write(
                progress.finish_attempt,
                StepFinish(step_id, "compensate", attempt, status, error, values),
            )
            if result:
                state.compensation = result
                run.event(
                    "step.compensated" if result == "succeeded" else "step.compensation_failed",
                    {"step_id": step_id, "request_id": request_id, "error": error},
                )
                break
            # In-process backoff: a crash here re-runs the compensation on takeover,
            # with the same key.
            await anyio.sleep(step.retry.delay_s(failures))
