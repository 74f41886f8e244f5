"""The workflow manifest: normalization and content hash, the plan it makes, refusals
naming the field, reading a directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.executor.errors import PlanInvalid
from gateway.workflows.diff import diff_manifests
from gateway.workflows.errors import WorkflowInvalid
from gateway.workflows.manifest import parse_manifest, read_directory

HASH = "a" * 64


def document(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "greeter",
        "version": "1.0.0",
        "inputs": {"type": "object", "properties": {"who": {"type": "string"}}},
        "plan": {"steps": [{"id": "hi", "tool": "up__echo", "arguments": {"text": "x"}}]},
        "tools": {"up__echo": HASH},
        "policy_revisions": ["b", "a"],
    }
    base.update(changes)
    return base


def test_the_same_content_has_the_same_hash_whatever_its_spelling() -> None:
    first = parse_manifest(document())
    again = parse_manifest(
        {**dict(reversed(list(document().items()))), "policy_revisions": ["a", "b", "a"]}
    )
    assert first.content_hash == again.content_hash and first.id == again.id
    assert first.id == "wf_" + first.content_hash.removeprefix("sha256:")[:32]
    # Defaults are part of the content: spelling them out changes nothing.
    explicit = parse_manifest(document(scenarios={}, approvals={"plan": None}))
    assert explicit.content_hash == first.content_hash
    assert parse_manifest(document(description="x")).content_hash != first.content_hash


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": "1.0"}, "version"),
        ({"version": "v1.0.0"}, "version"),
        ({"name": "Greeter"}, "name"),
        ({"tools": {"up__echo": "sha256:abc"}}, "tools"),
        ({"surprise": 1}, "surprise"),
        ({"approvals": {"plan": {"approvers": []}}}, "approvals.plan.approvers"),
    ],
)
def test_a_malformed_manifest_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(WorkflowInvalid) as invalid:
        parse_manifest(document(**changes))
    assert invalid.value.details["problems"][0]["field"] == field


def test_hostile_documents_are_refused_clearly() -> None:
    with pytest.raises(WorkflowInvalid):
        parse_manifest(["not", "a", "manifest"])
    with pytest.raises(WorkflowInvalid):
        parse_manifest(document(description="\ud800"))  # a lone surrogate: not I-JSON
    nested: Any = "x"
    for _ in range(200):
        nested = {"a": nested}
    with pytest.raises(WorkflowInvalid):
        parse_manifest(document(inputs=nested))


def test_the_plan_is_the_template_named_with_the_manifests_input_schema() -> None:
    plan = parse_manifest(document(description="greets")).to_plan()
    assert plan.name == "greeter" and plan.description == "greets"
    assert plan.inputs == document()["inputs"]
    with pytest.raises(WorkflowInvalid):
        parse_manifest(document(plan={"inputs": {}, "steps": []})).to_plan()
    with pytest.raises(PlanInvalid):
        parse_manifest(document(plan={"steps": []})).to_plan()


def test_the_ref_it_hands_the_executor() -> None:
    manifest = parse_manifest(document(approvals={"plan": {"approvers": ["role:sre"]}}))
    ref = manifest.to_ref(channel="prod")
    assert ref.to_policy() == {
        "name": "greeter",
        "version": "1.0.0",
        "id": manifest.id,
        "hash": manifest.content_hash,
        "channel": "prod",
    }
    assert ref.tools == {"up__echo": HASH} and ref.plan_approvers == ("role:sre",)


def test_a_directory_brings_its_scenarios(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "workflow.yaml").write_text(yaml.safe_dump(document(scenarios={"a": {"x": 1}})))
    (tmp_path / "scenarios" / "b.yaml").write_text("inputs: {who: b}\n")
    read = read_directory(tmp_path)
    assert read["scenarios"] == {"a": {"x": 1}, "b": {"inputs": {"who": "b"}}}
    (tmp_path / "scenarios" / "a.yaml").write_text("{}\n")
    with pytest.raises(WorkflowInvalid, match="defined twice"):
        read_directory(tmp_path)
    with pytest.raises(WorkflowInvalid, match="cannot read"):
        read_directory(tmp_path / "missing")


def test_diff_reports_exactly_what_changed() -> None:
    a = parse_manifest(document())
    assert diff_manifests(a, a) == {}
    steps = [
        {"id": "hi", "tool": "up__echo", "arguments": {"text": "y"}},
        {"id": "more", "tool": "up__echo", "needs": ["hi"]},
    ]
    b = parse_manifest(
        document(
            plan={"steps": steps, "deadline_s": 60},
            tools={"up__echo": "b" * 64},
            policy_revisions=["a", "c"],
            scenarios={"s": {}},
        )
    )
    assert diff_manifests(a, b) == {
        "tools": {"changed": {"up__echo": {"from": HASH, "to": "b" * 64}}},
        "policy_revisions": {"added": ["c"], "removed": ["b"]},
        "plan": {
            "deadline_s": {"from": None, "to": 60},
            "steps": {
                "added": ["more"],
                "changed": {"hi": {"arguments": {"from": {"text": "x"}, "to": {"text": "y"}}}},
            },
        },
        "scenarios": {"added": ["s"]},
    }
