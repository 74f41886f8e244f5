"""The plan model (JSON or YAML) and its validation.

A plan is a DAG of steps, each exactly one of

- a **tool call** (``tool`` by gateway name, ``arguments`` with ``${{ }}`` templates,
  ``retry``, ``timeout_s``, ``compensate``),
- an **approval gate** (``approval``: approvers, timeout),
- a **timer** (``sleep_s``),

with edges by ``needs`` and an optional ``when`` condition. The pydantic models check
the shape at the edge; `gateway.executor.validation` checks what needs the whole plan
and the tool catalog.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from gateway.canonical import MAX_NESTING, NotIJson, check_document, sha256_hex
from gateway.executor.errors import PlanInvalid

# Step ids are JMESPath identifiers, so ``steps.<id>.output`` needs no quoting.
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
STEP_KINDS = ("tool", "approval", "sleep_s")
STEP_FIELDS = ("output", "status")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(Model):
    """Attempts of a tool step that ends in an upstream or tool error (never a denial)."""

    max_attempts: int = Field(1, ge=1, le=20)
    backoff_s: float = Field(1.0, ge=0, le=3600)
    factor: float = Field(2.0, ge=1, le=10)
    max_backoff_s: float = Field(300.0, ge=0, le=86400)

    def delay_s(self, failures: int) -> float:
        """The wait before the attempt after ``failures`` failed ones (``failures >= 1``)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.factor ** (failures - 1)))


class Compensation(Model):
    """The tool call that undoes a completed step when the run fails (saga)."""

    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = {}


class StepBase(Model):
    id: str = Field(pattern=STEP_ID_PATTERN)
    needs: list[str] = []
    when: str | None = Field(None, min_length=1)
    description: str | None = None


class ToolStep(StepBase):
    kind: Literal["tool"] = "tool"
    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = {}
    retry: Retry = Retry()
    timeout_s: float | None = Field(None, gt=0, le=86400)
    compensate: Compensation | None = None


class ApprovalGate(Model):
    # Who may approve: "role:<role>" or "user:<sub>" (never the submitter itself).
    approvers: list[str] = Field(["role:approver"], min_length=1)
    timeout_s: float = Field(3600.0, gt=0, le=30 * 86400)
    message: str | None = None


class ApprovalStep(StepBase):
    kind: Literal["approval"] = "approval"
    approval: ApprovalGate


class SleepStep(StepBase):
    kind: Literal["sleep"] = "sleep"
    sleep_s: float = Field(gt=0, le=30 * 86400)


def _step_kind(value: Any) -> str:
    if isinstance(value, dict):
        present = [k for k in STEP_KINDS if k in value]
        return {"tool": "tool", "approval": "approval", "sleep_s": "sleep"}.get(
            present[0] if present else "tool", "tool"
        )
    return str(getattr(value, "kind", "tool"))


Step = Annotated[
    Annotated[ToolStep, Tag("tool")]
    | Annotated[ApprovalStep, Tag("approval")]
    | Annotated[SleepStep, Tag("sleep")],
    Discriminator(_step_kind),
]


class Plan(Model):
    version: Literal[1] = 1
    name: str | None = Field(None, max_length=200)
    description: str | None = None
    # JSON Schema of the run's inputs; checked when a run is submitted.
    inputs: dict[str, Any] | None = None
    # The whole run must finish within this many seconds of its creation.
    deadline_s: float | None = Field(None, gt=0)
    # Tool calls the run may make, counting retries and compensations.
    max_tool_calls: int | None = Field(None, ge=1)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_kind_per_step(cls, data: Any) -> Any:
        # A clearer message than the union's: which keys decide what a step is.
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            for index, step in enumerate(data["steps"]):
                if isinstance(step, dict):
                    present = [k for k in STEP_KINDS if k in step]
                    if len(present) != 1:
                        raise ValueError(
                            f"steps[{index}]: a step needs exactly one of tool, approval or "
                            f"sleep_s (found {present or 'none'})"
                        )
        return data

    def step(self, step_id: str) -> ToolStep | ApprovalStep | SleepStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def tools(self) -> set[str]:
        """Every tool the plan may call, compensations included."""
        names = set()
        for step in self.steps:
            if isinstance(step, ToolStep):
                names.add(step.tool)
                if step.compensate:
                    names.add(step.compensate.tool)
        return names

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    @property
    def plan_hash(self) -> str:
        """SHA-256 of the JCS of the normalized plan: the same plan, the same hash,
        whether it came as JSON or YAML and whatever its key order."""
        return "sha256:" + sha256_hex(self.model_dump(mode="json"))


# --- parsing ---------------------------------------------------------------------


def parse_plan(data: Any) -> Plan:
    """A `Plan` from already-decoded JSON/YAML; raises `PlanInvalid` naming each field."""
    if not isinstance(data, dict):
        raise PlanInvalid([problem(None, "", "a plan must be a JSON or YAML object")])
    try:
        # The one rule for documents (I-JSON, bounded nesting); a plan nests its steps'
        # arguments a few levels down.
        check_document(data, max_depth=MAX_NESTING + 4)
    except NotIJson as exc:
        raise PlanInvalid([problem(None, exc.pointer, exc.reason)]) from None
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanInvalid(_pydantic_problems(exc, data)) from None


def load_plan_text(text: str) -> Plan:
    """A plan from JSON or YAML text (YAML 1.1 is a superset of JSON for this use)."""
    import yaml  # lazily: serving reads no YAML (start time, docs/performance.md)

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanInvalid([problem(None, "", f"not valid JSON or YAML: {exc}")]) from None
    except RecursionError:
        raise PlanInvalid([problem(None, "", "the plan is nested too deeply to read")]) from None
    return parse_plan(data)


def _pydantic_problems(exc: ValidationError, data: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    for error in exc.errors():
        loc = list(error["loc"])
        step_id = None
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            raw = raw_steps[loc[1]] if loc[1] < len(raw_steps) else None
            step_id = raw.get("id") if isinstance(raw, dict) else None
            step_id = step_id if isinstance(step_id, str) else f"steps[{loc[1]}]"
            loc = loc[2:]
            # The union's tag comes first; it is noise for the reader.
            if len(loc) > 1 and loc[0] in ("tool", "approval", "sleep"):
                loc = loc[1:]
        field = ".".join(str(p) for p in loc)
        problems.append(problem(step_id, field, error["msg"].removeprefix("Value error, ")))
    return problems


def problem(step: str | None, field: str, message: str) -> dict[str, Any]:
    return {"step": step, "field": field, "message": message}


def plan_from_json_text(text: str) -> Plan:
    """Strict JSON only (for stored plans)."""
    return parse_plan(json.loads(text))


def order(plan: Plan) -> Iterable[str]:
    """Step ids in a stable topological order (plan order among independent steps)."""
    done: set[str] = set()
    remaining = [s for s in plan.steps]
    while remaining:
        ready = [s for s in remaining if set(s.needs) <= done]
        if not ready:
            return  # a cycle; validation reports it
        for step in ready:
            done.add(step.id)
            yield step.id
        remaining = [s for s in remaining if s.id not in done]
