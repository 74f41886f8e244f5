"""What a tool step does: a call through the pipeline (with retries and timeouts), and
the compensation that undoes it when the run fails; and what a sleep step does.

Each function does the step's work and returns what happened to the step, a
`Transition`, which the runner applies (`RunState.apply`); it changes no state
itself. A tool step's attempt is recorded before the call and finished after it, by
the transition, both fenced; a success is finished by the run's next write
(`gateway.executor.progress`), and its ``step.completed`` event is queued the moment
the call returns (the runner applies a carried transition without awaiting
anything), beside the pipeline's own ``call.outcome`` record, so both go in one audit
commit. The idempotency key is
``<run id>:<step id>`` for every attempt of the step (and ``…:compensate`` for its
compensation), so a tool that honours keys applies the effect once however often a
crash makes the executor call it again.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio

from gateway.errors import GatewayError
from gateway.executor import progress
from gateway.executor.errors import ExpressionError
from gateway.executor.expressions import render
from gateway.executor.plan import SleepStep, ToolStep
from gateway.executor.run_view import RunView
from gateway.executor.step_state import AttemptEnd, StepState, StepStatus, Transition
from gateway.executor.store import StepFinish
from gateway.logs import new_request_id
from gateway.operations import Operation
from gateway.recording import recordable_arguments
from gateway.types import Outcome, OutcomeStatus

log = logging.getLogger(__name__)

RETRYABLE = ("tool_error", "error", "timeout")


class ToolChanged(GatewayError):
    """The tool's definition is not the one recorded when the plan was submitted."""

    code = "tool_changed"
    http_status = 409


async def run_tool_step(run: RunView, step: ToolStep) -> Transition:
    """Calls the step's tool once; what happened is the returned transition."""
    state = run.state(step.id)
    try:
        arguments = render(step.arguments, run.context())
    except ExpressionError as exc:
        return Transition.failed(step.id, exc.to_dict())
    problem = _definition_problem(run, step.tool)
    if problem is not None:
        return Transition.failed(step.id, problem.to_dict())
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
    await run.started(step.id)
    if calls > cap:
        error = {"code": "quota_exceeded", "message": f"the run used its {cap} tool calls"}
        return Transition(
            step.id,
            {"status": StepStatus.FAILED, "error": error},
            ended=AttemptEnd("step", attempt, "refused", error),
            event=("step.failed", {"step_id": step.id, "error": error}),
            run_failure={"code": "quota_exceeded", "step": step.id, "message": error["message"]},
        )
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
    # The result document as the pipeline hashed it for call.outcome's result_sha256,
    # kept so that `gateway runs replay` can prove what the tool returned (0029).
    result = outcome.result.to_dict() if outcome is not None and outcome.result else None
    common = {"arguments": shown, "decision": decision, "redact": pointers, "result": result}
    ended = AttemptEnd("step", attempt, status, error)
    if status == "ok":
        assert outcome is not None and outcome.result is not None
        # Applied before any await: the event is queued right behind the pipeline's
        # call.outcome record.
        return Transition(
            step.id,
            {
                "status": StepStatus.SUCCEEDED,
                "output": step_output(outcome),
                "error": None,
                **common,
            },
            ended=ended,
            carried=True,
            event=(
                "step.completed",
                {"step_id": step.id, "attempt": attempt, "request_id": request_id},
            ),
        )
    if status == "pending_approval" and outcome is not None:
        # Held for a human: wait for the decision holding nothing; when approved the
        # step calls again and the pipeline executes it, once (architecture.md §7).
        ttl = outcome.decision.obligations.approval_ttl_s if outcome.decision else None
        values = {"status": StepStatus.WAITING, "approval_id": outcome.approval_id}
        return Transition(
            step.id,
            {**values, "error": error, **common},
            ended=ended,
            wake_in_s=float(ttl or run.deps.config.max_run_s),
            event=("step.waiting", {"step_id": step.id, "approval_id": outcome.approval_id}),
        )
    failures = state.failures + 1
    if status in RETRYABLE and failures < step.retry.max_attempts:
        delay = step.retry.delay_s(failures)
        return Transition(
            step.id,
            {"status": StepStatus.WAITING, "failures": failures, "error": error, **common},
            ended=ended,
            wake_in_s=delay,
            event=(
                "step.retrying",
                {"step_id": step.id, "attempt": attempt, "error": error, "retry_in_s": delay},
            ),
        )
    return Transition(
        step.id,
        {"status": StepStatus.FAILED, "failures": failures, "error": error, **common},
        ended=ended,
        event=("step.failed", {"step_id": step.id, "attempt": attempt, "error": error}),
    )


def sleep_step(step: SleepStep, state: StepState) -> Transition:
    """A sleep step starts waiting ``sleep_s`` on the database clock, and succeeds when
    the runner finds it due."""
    if state.status == StepStatus.WAITING:
        return Transition(
            step.id,
            {"status": StepStatus.SUCCEEDED, "output": {}},
            event=("step.completed", {"step_id": step.id, "kind": "sleep"}),
        )
    return Transition(
        step.id,
        {"status": StepStatus.WAITING},
        wake_in_s=step.sleep_s,
        event=("step.started", {"step_id": step.id, "kind": "sleep"}),
    )


def _definition_problem(run: RunView, tool: str) -> GatewayError | None:
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
    run: RunView,
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


async def compensate_step(run: RunView, step_id: str) -> Transition | None:
    """Undoes a completed step of a failed run (the runner goes dependents first, as a
    saga). A compensation is a tool call through the pipeline like any step, retried
    as the step is; ``None`` when the step has nothing to undo."""
    step = run.plan.step(step_id)
    state = run.state(step_id)
    compensation = getattr(step, "compensate", None)
    if compensation is None or state.status != StepStatus.SUCCEEDED or state.compensation:
        return None
    assert isinstance(step, ToolStep)
    key = f"{run.run_id}:{step_id}:compensate"
    try:
        arguments = render(compensation.arguments, run.context(including=step_id))
    except ExpressionError as exc:
        return Transition(step_id, {"compensation": "failed", "compensation_error": exc.to_dict()})
    for failures in range(1, step.retry.max_attempts + 1):
        request_id = new_request_id()
        attempt, _, _ = await run.write(
            progress.begin_attempt, step_id, "compensate", request_id, key
        )
        outcome = await call_tool(
            run, compensation.tool, arguments, request_id, key, step_id, step.timeout_s
        )
        status, error = classify(outcome)
        ended = AttemptEnd("compensate", attempt, status, error)
        if status == "ok":
            result = "succeeded"
        elif status not in RETRYABLE or failures == step.retry.max_attempts:
            result = "failed"
        else:
            # The attempt ends and the step stays as it is: in-process backoff. A crash
            # here re-runs the compensation on takeover, with the same key.
            finish = StepFinish(step_id, ended.purpose, attempt, status, error)
            await run.write(progress.finish_attempt, finish)
            await anyio.sleep(step.retry.delay_s(failures))
            continue
        values: dict[str, Any] = {"compensation": result}
        if result == "failed":
            values["compensation_error"] = error
        kind = "step.compensated" if result == "succeeded" else "step.compensation_failed"
        return Transition(
            step_id,
            values,
            ended=ended,
            event=(kind, {"step_id": step_id, "request_id": request_id, "error": error}),
        )
    return None  # unreachable: the last attempt always decides
