"""Scenarios: a workflow's own tests, run offline (``gateway workflows test``).

A scenario (``scenarios/<name>.yaml``, or inline in the manifest) gives the inputs, who
runs it, what each tool step's call returned (recorded results: no upstream is called),
and what is expected::

    inputs: {text: hi}
    subject: {sub: agent:ci, roles: [agent]}   # default: whoever runs the test
    results:
      note: {output: {result: "note: hi"}}      # a tool step's output…
      delete: {error: {code: tool_error, message: "table locked"}}   # …or its error
    expect:
      status: succeeded                         # or failed, refused
      error: step_failed                        # the run's error code, when it failed
      steps: {note: succeeded, delete: skipped} # the steps named, by status
      approvals: [delete]                       # exactly the steps that need approval

Policy decides as it would for a real run (``plan/submit``, then every tool step as a
``tools/call`` with the step's rendered arguments), with the gateway's current policy
and catalog: a scenario fails when a decision, a branch, an argument template or a
recorded result makes the run end otherwise than expected.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.executor.plan import problem
from gateway.workflows.errors import WorkflowInvalid


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subject(_Model):
    sub: str = Field(min_length=1)
    roles: list[str] = []


class Recorded(_Model):
    output: Any = None
    error: dict[str, Any] | None = None


class Expectation(_Model):
    status: Literal["succeeded", "failed", "refused"] = "succeeded"
    error: str | None = None
    steps: dict[str, str] = {}
    approvals: list[str] | None = None


class Scenario(_Model):
    description: str | None = None
    inputs: dict[str, Any] = {}
    subject: Subject | None = None
    results: dict[str, Recorded] = {}
    expect: Expectation = Expectation()


def parse_scenario(name: str, document: Any) -> Scenario:
    try:
        return Scenario.model_validate(document if document is not None else {})
    except ValidationError as exc:
        raise WorkflowInvalid(
            [
                problem(None, f"scenarios.{name}." + ".".join(str(p) for p in e["loc"]), e["msg"])
                for e in exc.errors()
            ]
        ) from None


def mismatches(scenario: Scenario, outcome: dict[str, Any]) -> list[str]:
    """What the simulated ``outcome`` (`gateway.workflows.simulate.simulate`) does not
    meet of the scenario's expectations, one sentence each (none: it passes)."""
    expect = scenario.expect
    found = []
    if outcome["status"] != expect.status:
        why = f" ({outcome['error']['message']})" if outcome.get("error") else ""
        found.append(f"the run {outcome['status']}{why}, expected {expect.status}")
    code = (outcome.get("error") or {}).get("code")
    if expect.error is not None and code != expect.error:
        found.append(f"the run's error is {code}, expected {expect.error}")
    steps = outcome["steps"]
    for step_id, status in sorted(expect.steps.items()):
        actual = steps.get(step_id, {}).get("status", "absent")
        if actual != status:
            found.append(f"step {step_id} {actual}, expected {status}")
    if expect.approvals is not None:
        needing = sorted(s for s, v in steps.items() if v.get("approval_needed"))
        if needing != sorted(expect.approvals):
            found.append(
                f"steps needing approval are {needing}, expected {sorted(expect.approvals)}"
            )
    return found
