"""Errors of the executor, each with a stable ``code`` (documented in docs/workflows.md)."""

from __future__ import annotations

from typing import Any

from gateway.errors import INVALID_PARAMS, GatewayError


class ExecutorError(GatewayError):
    """Root of the executor's errors."""

    code = "executor_error"


class PlanInvalid(ExecutorError):
    """A plan that cannot run: malformed, cyclic, unknown tools, dangling references.

    ``details["problems"]`` lists every problem found, each naming the step (``None``
    for the plan as a whole) and the field, so a planning agent can fix them all at once.
    """

    code = "plan_invalid"
    http_status = 400
    jsonrpc_code = INVALID_PARAMS

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        lines = [
            (f"step {p['step']!r}: " if p.get("step") else "")
            + (f"{p['field']}: " if p.get("field") else "")
            + p["message"]
            for p in problems
        ]
        super().__init__("the plan is invalid: " + "; ".join(lines), details={"problems": problems})
        self.problems = problems


class InputsInvalid(ExecutorError):
    """The run's inputs do not match the plan's ``inputs`` schema."""

    code = "inputs_invalid"
    http_status = 400
    jsonrpc_code = INVALID_PARAMS


class ExpressionError(ExecutorError):
    """An expression failed to evaluate at run time (a step fails, not retried)."""

    code = "expression_failed"
    http_status = 400


class PlanRefused(ExecutorError):
    """Policy refused the plan (``action: "plan/submit"``); no run was created."""

    code = "plan_refused"
    http_status = 403


class WorkflowDrifted(ExecutorError):
    """A published workflow pins tool definitions that the catalog no longer offers as
    pinned (``details.drifted``: each tool, the pinned and the current hash)."""

    code = "workflow_drifted"
    http_status = 409


class RunNotFound(ExecutorError):
    code = "run_not_found"
    http_status = 404
    jsonrpc_code = INVALID_PARAMS


class IdempotencyConflict(ExecutorError):
    """The idempotency key was used before for a different plan or inputs."""

    code = "idempotency_conflict"
    http_status = 409


class RunFinished(ExecutorError):
    """The run already finished; it cannot be cancelled any more."""

    code = "run_finished"
    http_status = 409


class ScheduleNotFound(ExecutorError):
    code = "schedule_not_found"
    http_status = 404


class LeaseLost(ExecutorError):
    """This worker's fencing token is no longer current: another worker owns the run.

    Raised inside a worker only; the worker stops writing and drops the run.
    """

    code = "lease_lost"
    http_status = 409


def only_lease_lost(exc: BaseException) -> LeaseLost | None:
    """``exc`` when it is `LeaseLost`, also as the only error inside task groups'
    exception groups (a write by the run's driver raises it through two of them)."""
    if isinstance(exc, LeaseLost):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        lost, rest = exc.split(LeaseLost)
        while rest is None and isinstance(lost, BaseExceptionGroup):
            lost = lost.exceptions[0]
        if rest is None and isinstance(lost, LeaseLost):
            return lost
    return None
