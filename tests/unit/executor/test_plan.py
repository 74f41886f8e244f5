"""The plan model and its validation: shapes, graphs, references, schemas."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from gateway.errors import InvalidArguments, UnknownTool
from gateway.executor.errors import ExpressionError, InputsInvalid, PlanInvalid
from gateway.executor.expressions import compile_expression, condition_holds, render, root_paths
from gateway.executor.plan import ApprovalStep, SleepStep, ToolStep, load_plan_text, parse_plan
from gateway.executor.validation import check_inputs, validate_plan


class Entry:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def validate(self, arguments: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(self.schema).iter_errors(arguments)
        )
        if error is not None:
            raise InvalidArguments(f"arguments do not match the input schema: {error.message}")


class Tools:
    """A catalog stand-in with the same resolve/validate behaviour as the real one."""

    schemas = {
        "up__echo": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
        "up__undo": {"type": "object"},
    }

    def resolve(self, name: str) -> Entry:
        if name not in self.schemas:
            raise UnknownTool(f"unknown tool {name!r}")
        return Entry(self.schemas[name])


def problems(plan: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    with pytest.raises(PlanInvalid) as caught:
        validate_plan(parse_plan(plan), Tools())
    return [(p["step"], p["field"], p["message"]) for p in caught.value.problems]


def test_json_and_yaml_give_the_same_plan_and_hash() -> None:
    yaml_text = """
name: demo
steps:
  - id: a
    tool: up__echo
    arguments: {text: "${{ inputs.x }}"}
  - id: gate
    needs: [a]
    approval: {approvers: ["role:approver"], timeout_s: 60}
  - id: nap
    needs: [gate]
    sleep_s: 5
"""
    json_text = (
        '{"steps": [{"arguments": {"text": "${{ inputs.x }}"}, "tool": "up__echo", "id": "a"},'
        '{"id": "gate", "needs": ["a"], "approval": {"timeout_s": 60, '
        '"approvers": ["role:approver"]}}, {"id": "nap", "needs": ["gate"], "sleep_s": 5}],'
        '"name": "demo"}'
    )
    from_yaml, from_json = load_plan_text(yaml_text), load_plan_text(json_text)
    assert from_yaml.plan_hash == from_json.plan_hash
    assert [type(s) for s in from_yaml.steps] == [ToolStep, ApprovalStep, SleepStep]
    validate_plan(from_yaml, Tools())


def test_shape_errors_name_the_step_and_field() -> None:
    with pytest.raises(PlanInvalid) as caught:
        parse_plan({"steps": [{"id": "a", "tool": "up__echo", "retry": {"max_attempts": 0}}]})
    assert caught.value.problems[0]["step"] == "a"
    assert caught.value.problems[0]["field"] == "retry.max_attempts"
    with pytest.raises(PlanInvalid, match="exactly one of tool, approval or sleep_s"):
        parse_plan({"steps": [{"id": "a", "tool": "up__echo", "sleep_s": 1}]})
    with pytest.raises(PlanInvalid, match="id"):
        parse_plan({"steps": [{"id": "has-dash", "tool": "up__echo"}]})
    with pytest.raises(PlanInvalid, match="not valid JSON or YAML"):
        load_plan_text("steps: [")
    with pytest.raises(PlanInvalid):
        parse_plan({"steps": []})


def test_cycles_are_reported_with_their_path() -> None:
    found = problems(
        {
            "steps": [
                {"id": "a", "tool": "up__echo", "arguments": {"text": "x"}, "needs": ["c"]},
                {"id": "b", "tool": "up__echo", "arguments": {"text": "x"}, "needs": ["a"]},
                {"id": "c", "tool": "up__echo", "arguments": {"text": "x"}, "needs": ["b"]},
            ]
        }
    )
    assert found == [("a", "needs", "the steps form a cycle: a -> c -> b -> a")]


def test_unknown_needs_self_needs_and_duplicates() -> None:
    found = problems(
        {
            "steps": [
                {
                    "id": "a",
                    "tool": "up__echo",
                    "arguments": {"text": "x"},
                    "needs": ["ghost", "a"],
                },
                {"id": "a", "tool": "up__echo", "arguments": {"text": "y"}},
            ]
        }
    )
    assert ("a", "id", "step ids must be unique") in found
    assert ("a", "needs", "unknown step 'ghost'") in found
    assert ("a", "needs", "a step cannot need itself") in found


def test_unknown_tools_and_literal_arguments_that_fail_the_schema() -> None:
    found = problems(
        {
            "steps": [
                {"id": "a", "tool": "up__missing"},
                {"id": "b", "tool": "up__echo", "arguments": {"text": 3}},
                {
                    "id": "c",
                    "tool": "up__echo",
                    "arguments": {"text": "ok"},
                    "compensate": {"tool": "up__gone"},
                },
            ]
        }
    )
    assert ("a", "tool", "unknown tool 'up__missing'") in found
    assert any(p[:2] == ("b", "arguments") and "3 is not of type 'string'" in p[2] for p in found)
    assert ("c", "compensate.tool", "unknown tool 'up__gone'") in found


def test_dangling_references() -> None:
    found = problems(
        {
            "inputs": {"type": "object", "properties": {"x": {"type": "string"}}},
            "steps": [
                {"id": "a", "tool": "up__echo", "arguments": {"text": "${{ inputs.y }}"}},
                {"id": "b", "tool": "up__echo", "arguments": {"text": "${{ steps.a.output.t }}"}},
                {
                    "id": "c",
                    "tool": "up__echo",
                    "needs": ["a"],
                    "arguments": {"text": "${{ steps.zz.output }}"},
                },
                {
                    "id": "d",
                    "tool": "up__echo",
                    "needs": ["a"],
                    "when": "secrets.key",
                    "arguments": {"text": "${{ steps.a.result }}"},
                },
                {"id": "e", "tool": "up__echo", "arguments": {"text": "${{ @ }}"}},
                {"id": "f", "tool": "up__echo", "arguments": {"text": "${{ steps.a.output[ }}"}},
            ],
        }
    )
    by_step = {p[0]: p[2] for p in found}
    assert "input 'y' is not declared" in by_step["a"]
    assert "not among this step's needs" in by_step["b"]
    assert "unknown step 'zz'" in by_step["c"]
    assert any(p[:2] == ("d", "when") and "unknown name 'secrets'" in p[2] for p in found)
    assert any(p[:2] == ("d", "arguments.text") and "not 'result'" in p[2] for p in found)
    assert "whole context" in by_step["e"]
    assert "invalid expression" in by_step["f"]


def test_transitive_needs_and_compensation_may_read_their_own_step() -> None:
    validate_plan(
        parse_plan(
            {
                "steps": [
                    {"id": "a", "tool": "up__echo", "arguments": {"text": "x"}},
                    {
                        "id": "b",
                        "tool": "up__echo",
                        "needs": ["a"],
                        "arguments": {"text": "y"},
                        "compensate": {
                            "tool": "up__undo",
                            "arguments": {"of": "${{ steps.b.output }}"},
                        },
                    },
                    {
                        "id": "c",
                        "tool": "up__echo",
                        "needs": ["b"],
                        "arguments": {"text": "${{ steps.a.output.text }}"},
                    },
                ]
            }
        ),
        Tools(),
    )


def test_step_limit() -> None:
    plan = parse_plan({"steps": [{"id": f"s{i}", "sleep_s": 1} for i in range(5)]})
    with pytest.raises(PlanInvalid, match="exceed this gateway's limit of 4"):
        validate_plan(plan, Tools(), max_steps=4)


def test_inputs_are_checked_against_the_plan_schema() -> None:
    plan = parse_plan(
        {
            "inputs": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer"}},
            },
            "steps": [{"id": "a", "sleep_s": 1}],
        }
    )
    check_inputs(plan, {"n": 1})
    with pytest.raises(InputsInvalid, match="n"):
        check_inputs(plan, {"n": "one"})


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_plans_and_inputs_nested_too_deep_are_invalid_not_a_crash() -> None:
    plan = parse_plan({"steps": [{"id": "a", "tool": "t__x", "arguments": {"v": _nested(60)}}]})
    check_inputs(plan, {"v": _nested(60)})
    with pytest.raises(InputsInvalid, match="nested more than 64 levels"):
        check_inputs(plan, {"v": _nested(2000)})
    with pytest.raises(PlanInvalid, match="nested more than 68 levels"):
        parse_plan({"steps": [{"id": "a", "tool": "t__x", "arguments": {"v": _nested(2000)}}]})
    with pytest.raises(PlanInvalid, match="nested too deeply to read"):
        load_plan_text("steps: " + "[" * 5000 + "]" * 5000)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (9007199254740993, "not exactly representable"),
        (float("nan"), "finite doubles only"),
        (float("inf"), "finite doubles only"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_plans_and_inputs_outside_i_json_are_invalid_naming_where(
    value: object, reason: str
) -> None:
    with pytest.raises(PlanInvalid, match=reason) as raised:
        parse_plan({"steps": [{"id": "a", "tool": "t__x", "arguments": {"v": value}}]})
    assert raised.value.problems[0]["field"] == "/steps/0/arguments/v"
    plan = parse_plan({"steps": [{"id": "a", "tool": "t__x", "arguments": {}}]})
    with pytest.raises(InputsInvalid, match=reason) as refused:
        check_inputs(plan, {"n": [value]})
    assert refused.value.details["pointer"] == "/n/0"
    check_inputs(plan, {"n": 1e17, "m": 100000000000000000})  # exact doubles are fine


def test_rendering_keeps_types_and_interpolates_text() -> None:
    context = {"inputs": {"n": 3, "name": "x"}, "steps": {"a": {"output": {"items": [1, 2]}}}}
    rendered = render(
        {
            "count": "${{ inputs.n }}",
            "label": "n=${{ inputs.n }} of ${{ inputs.name }}",
            "items": ["${{ steps.a.output.items }}", "literal"],
            "missing": "${{ inputs.none }}",
        },
        context,
    )
    assert rendered == {
        "count": 3,
        "label": "n=3 of x",
        "items": [[1, 2], "literal"],
        "missing": None,
    }
    with pytest.raises(ExpressionError):
        render("${{ length(inputs.n) }}", context)


def test_when_uses_jmespath_truthiness() -> None:
    context = {"inputs": {"zero": 0, "empty": [], "no": False}, "steps": {}}
    assert condition_holds("inputs.zero", context)  # 0 is true in JMESPath
    assert not condition_holds("inputs.empty", context)
    assert not condition_holds("${{ inputs.no }}", context)
    assert condition_holds("!(inputs.no)", context)


def test_references_ignore_names_read_inside_projections() -> None:
    parsed = compile_expression("steps.a.output.items[?n > `1`].name | length(@)")
    assert root_paths(parsed) == [("steps", "a", "output", "items")]
