"""The durable executor (architecture.md §8): plans in, runs out, every step through the pipeline.

One concept per module:

- `plan`: the plan model (JSON/YAML); `validation`: checking it against the catalog.
- `expressions`: JMESPath references (``${{ inputs.x }}``) and ``when`` conditions.
- `store`: runs, steps and attempts in SQL; leases, fencing tokens, the database clock.
- `progress` (and `progress_one_statement`, its one-statement form on PostgreSQL): the fenced
  writes of a claimed run; `writer`: one run's writes in order, a step's result
  carried by the next one.
- `records`: creating, reading, listing and cancelling runs; run views.
- `runner` / `steps` / `gates`: executing one claimed run; tool calls, retries,
  compensation, sleeps, approval gates and steps waiting for an approval. The runner's
  `RunExecution` builds on `driver` (`RunDriver`: which steps start, are skipped or
  wait, and when to look again) and `run_state` (`RunState`: what the run holds, and
  `apply`, the one place a step's state changes).
- `step_state`: `StepStatus`, a step's (frozen) state and the `Transition`s the step
  logic returns; `run_view`: what the step logic sees of its run (`RunView`).
- `worker`: the claim-execute loops of `gateway serve` and `gateway worker`.
- `service`: `Executor`, submission as a ``plan/submit`` policy decision.
- `review`: the review of a whole plan before any step (an approval), when policy's
  ``plan_review`` obligation or the plan's workflow asks for one.
- `workflow_ref`: what a run knows of the published workflow it runs (`WorkflowRef`),
  and the check that its pinned tool definitions are still the catalog's.
- `schedules`: plans fired on a cron schedule.
- `held_calls`: a tool call held for approval, run by the executor once approved
  (what an MCP task of a held call stands on); `mcp_tools`: the executor as the
  gateway's own MCP tools (``workflow__submit_plan``, ``workflow__get_run``).
- `deps`: what the executor's parts share (the run store, the gateway's components);
  `errors`: its errors, each with a stable code.

Invariants:

- A run exists only after the ``plan/submit`` decision allowing it is in the audit log.
- A run whose plan waits for a review starts no step before the review is approved.
- Only the holder of a run's current fencing token writes it; a succeeded step is
  never started again; every attempt of a step carries the same idempotency key.
- Lease and timer arithmetic uses the database clock.
- Only the runner changes a step's state: the step logic returns what happened
  (`Transition`) and `RunState.apply` writes, mirrors and audits it.
"""

from gateway.executor.errors import (
    ExecutorError,
    IdempotencyConflict,
    InputsInvalid,
    LeaseLost,
    PlanInvalid,
    PlanRefused,
    RunFinished,
    RunNotFound,
)
from gateway.executor.plan import Plan, load_plan_text, parse_plan
from gateway.executor.validation import validate_plan

__all__ = [
    "ExecutorError",
    "IdempotencyConflict",
    "InputsInvalid",
    "LeaseLost",
    "Plan",
    "PlanInvalid",
    "PlanRefused",
    "RunFinished",
    "RunNotFound",
    "load_plan_text",
    "parse_plan",
    "validate_plan",
]
