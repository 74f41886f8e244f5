"""Plan validation: what needs the whole plan and the tool catalog.

Duplicate ids, unknown needs, cycles (with their path), unknown tools (compensations
too), expressions that do not parse, references to anything but inputs and the
steps a step depends on, and literal arguments that fail the tool's input schema.
Every problem is reported at once (`PlanInvalid`), each naming its step and field.
"""

from __future__ import annotations

from typing import Any, Protocol

import jsonschema

from gateway.canonical import NotIJson, check_document
from gateway.errors import GatewayError
from gateway.executor.errors import ExpressionError, InputsInvalid, PlanInvalid
from gateway.executor.expressions import (
    WHOLE_CONTEXT,
    compile_expression,
    condition_text,
    has_templates,
    root_paths,
    templates,
)
from gateway.executor.plan import STEP_FIELDS, Plan, ToolStep
from gateway.executor.plan import problem as _problem


class ToolLookup(Protocol):
    """What validation needs from the catalog (`gateway.upstreams.catalog.Catalog`)."""

    def resolve(self, name: str) -> Any: ...


# --- validation --------------------------------------------------------------------


def validate_plan(plan: Plan, tools: ToolLookup, *, max_steps: int | None = None) -> None:
    """Raises `PlanInvalid` listing every problem; returns ``None`` for a valid plan."""
    problems: list[dict[str, Any]] = []
    ids = [s.id for s in plan.steps]
    known = set(ids)
    for step_id in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(_problem(step_id, "id", "step ids must be unique"))
    if max_steps is not None and len(plan.steps) > max_steps:
        problems.append(
            _problem(
                None, "steps", f"{len(plan.steps)} steps exceed this gateway's limit of {max_steps}"
            )
        )
    for step in plan.steps:
        for need in step.needs:
            if need == step.id:
                problems.append(_problem(step.id, "needs", "a step cannot need itself"))
            elif need not in known:
                problems.append(_problem(step.id, "needs", f"unknown step {need!r}"))
    cycle = find_cycle(plan)
    if cycle:
        problems.append(
            _problem(cycle[0], "needs", "the steps form a cycle: " + " -> ".join(cycle))
        )
    ancestors = {} if cycle else ancestor_sets(plan)
    input_names = _declared_inputs(plan)
    for step in plan.steps:
        visible = ancestors.get(step.id, set())
        if step.when is not None:
            problems += _check_expression(
                step.id, "when", condition_text(step.when), visible, known, input_names
            )
        if isinstance(step, ToolStep):
            problems += _check_tool(step.id, "tool", step.tool, step.arguments, tools)
            for path, text in templates(step.arguments):
                problems += _check_expression(
                    step.id, f"arguments.{path}", text, visible, known, input_names
                )
            if step.compensate:
                problems += _check_tool(
                    step.id,
                    "compensate.tool",
                    step.compensate.tool,
                    step.compensate.arguments,
                    tools,
                )
                # A compensation may read its own step's output: it undoes that step.
                for path, text in templates(step.compensate.arguments):
                    problems += _check_expression(
                        step.id,
                        f"compensate.arguments.{path}",
                        text,
                        visible | {step.id},
                        known,
                        input_names,
                    )
    if problems:
        raise PlanInvalid(problems)


def check_inputs(plan: Plan, inputs: dict[str, Any]) -> None:
    """Raises `InputsInvalid` when ``inputs`` are not a document the gateway accepts
    (`gateway.canonical.check_document`) or fail the plan's ``inputs`` schema."""
    try:
        check_document(inputs)
    except NotIJson as exc:
        raise InputsInvalid(
            f"inputs{exc.pointer}: {exc.reason}",
            details={"pointer": exc.pointer, "reason": exc.reason},
        ) from None
    if plan.inputs is None:
        return
    try:
        validator_cls = jsonschema.validators.validator_for(
            plan.inputs, default=jsonschema.Draft202012Validator
        )
        validator_cls.check_schema(plan.inputs)
    except jsonschema.exceptions.SchemaError as exc:
        problem = _problem(None, "inputs", f"not a valid JSON Schema: {exc.message}")
        raise PlanInvalid([problem]) from None
    error = jsonschema.exceptions.best_match(validator_cls(plan.inputs).iter_errors(inputs))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(inputs)"
        raise InputsInvalid(
            f"inputs do not match the plan's inputs schema: {where}: {error.message}"
        )


def find_cycle(plan: Plan) -> list[str] | None:
    """One cycle as a closed path of step ids (``[a, b, a]``), or ``None``."""
    graph = {s.id: [n for n in s.needs if n != s.id] for s in plan.steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for need in graph.get(node, []):
            if need not in graph:
                continue
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need not in state:
                found = visit(need)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for step_id in graph:
        if step_id not in state:
            found = visit(step_id)
            if found:
                return found
    return None


def ancestor_sets(plan: Plan) -> dict[str, set[str]]:
    """Every step's transitive needs. Requires an acyclic plan."""
    needs = {s.id: set(s.needs) for s in plan.steps}
    memo: dict[str, set[str]] = {}

    def of(step_id: str) -> set[str]:
        if step_id not in memo:
            found: set[str] = set()
            for need in needs.get(step_id, ()):
                if need in needs:
                    found |= {need} | of(need)
            memo[step_id] = found
        return memo[step_id]

    return {step_id: of(step_id) for step_id in needs}


def _declared_inputs(plan: Plan) -> set[str] | None:
    """The input names the plan's schema declares, or ``None`` when it does not say."""
    properties = (plan.inputs or {}).get("properties")
    return set(properties) if isinstance(properties, dict) else None


def _check_tool(
    step_id: str, field: str, name: str, arguments: dict[str, Any], tools: ToolLookup
) -> list[dict[str, Any]]:
    try:
        entry = tools.resolve(name)
    except GatewayError as exc:
        return [_problem(step_id, field, exc.message)]
    if not has_templates(arguments):
        try:
            entry.validate(arguments)
        except GatewayError as exc:
            return [_problem(step_id, field.replace("tool", "arguments"), exc.message)]
    return []


def _check_expression(
    step_id: str,
    field: str,
    text: str,
    visible: set[str],
    known: set[str],
    input_names: set[str] | None,
) -> list[dict[str, Any]]:
    try:
        parsed = compile_expression(text)
    except ExpressionError as exc:
        return [_problem(step_id, field, exc.message)]
    problems = []
    for path in root_paths(parsed):
        problem = _check_reference(path, visible, known, input_names)
        if problem:
            problems.append(_problem(step_id, field, f"{text!r}: {problem}"))
    return problems


def _check_reference(
    path: tuple[str, ...], visible: set[str], known: set[str], input_names: set[str] | None
) -> str | None:
    if path == WHOLE_CONTEXT:
        return "refers to the whole context (@); name inputs.<x> or steps.<id>.output"
    root = path[0]
    if root == "inputs":
        if input_names is not None and len(path) > 1 and path[1] not in input_names:
            return f"input {path[1]!r} is not declared in the plan's inputs schema"
        return None
    if root != "steps":
        return f"unknown name {root!r}: expressions read inputs.<name> or steps.<id>.output"
    if len(path) < 2:
        return "name the step: steps.<id>.output"
    target = path[1]
    if target not in known:
        return f"refers to unknown step {target!r}"
    if target not in visible:
        return f"refers to step {target!r}, which is not among this step's needs"
    if len(path) > 2 and path[2] not in STEP_FIELDS:
        return f"a step offers {' and '.join(STEP_FIELDS)}, not {path[2]!r}"
    return None
