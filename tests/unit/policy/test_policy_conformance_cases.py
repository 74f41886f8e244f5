"""Loading conformance cases: clear errors naming file and case; overlay semantics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.conformance import (
    ConformanceCaseError,
    ConformanceFailed,
    cases_path,
    check_embedded,
    load_cases,
)
from gateway.policy.embedded import overlay_data

EXPECTED = {
    "allow": True,
    "require_approval": False,
    "reasons": ["ok"],
    "obligations": {"redact": [], "approvers": []},
    "rule": "r",
}
ALLOW_ALL = """package gateway

import rego.v1

decision := {
	"allow": true,
	"require_approval": false,
	"reasons": ["ok"],
	"obligations": {"redact": [], "approvers": []},
	"rule": rule,
}

default rule := "r"

rule := data.settings.rule
"""


def write_cases(path: Path, cases: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cases": cases}) if not isinstance(cases, str) else cases)
    return path


def case(name: str = "c", **changes: Any) -> dict[str, Any]:
    return {"name": name, "input": {"version": 1}, "expected": EXPECTED, **changes}


def test_a_file_keyed_by_its_own_name_loads_and_merges_as_opa_data(tmp_path: Path) -> None:
    # OPA loads every *.json under a policy folder as data, mounted at the folder:
    # keyed by their names, the case files merge (data.conformance.grants, .lists).
    folder = tmp_path / "conformance"
    folder.mkdir()
    (folder / "grants.json").write_text(json.dumps({"grants": [case("g")]}))
    visible = case("v", entrypoint="gateway/visible", expected={"visible": ["b", "a"]})
    (folder / "lists.json").write_text(json.dumps({"lists": [visible]}))
    grants, lists = load_cases(folder)
    assert (grants.name, grants.entrypoint) == ("g", "gateway/decision")
    assert (lists.name, lists.entrypoint) == ("v", "gateway/visible")
    assert lists.expected == {"visible": ["a", "b"]}  # a set: the catalog orders it


def test_cases_load_from_a_folder_in_file_order(tmp_path: Path) -> None:
    write_cases(tmp_path / "b.json", [case("b1")])
    write_cases(tmp_path / "a.json", [case("a1"), case("a2", data={"x": 1})])
    cases = load_cases(tmp_path)
    assert [(c.file, c.name) for c in cases] == [
        ("a.json", "a1"),
        ("a.json", "a2"),
        ("b.json", "b1"),
    ]
    assert cases[1].data == {"x": 1} and cases[0].data is None
    assert cases[0].expected == EXPECTED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "conformance file bad.json is not valid JSON"),
        ('{"case": []}', 'bad.json must be an object with one key, "bad" (its own name)'),
        ('{"bad": [], "cases": []}', 'bad.json must be an object with one key, "bad"'),
        (
            json.dumps({"bad": [case("x", entrypoint="gateway/visible", expected={"v": []})]}),
            'bad.json: case 0 (\'x\'): "expected" policy list result is malformed',
        ),
        ([case("x", entrypoint="gateway/other")], '"entrypoint" must be gateway/decision or'),
        ([{"input": {}}], 'bad.json: case 0 needs a non-empty "name"'),
        ([case("x", input=[])], "bad.json: case 0 ('x'): \"input\" must be an object"),
        ([case("x", data=[1])], "bad.json: case 0 ('x'): \"data\" must be an object"),
        ([case("x", expect={})], "bad.json: case 0 ('x'): unknown keys ['expect']"),
        (
            [case("x", expected={"allow": True})],
            "bad.json: case 0 ('x'): \"expected\" must be the full decision; missing",
        ),
        (
            [case("x", expected={**EXPECTED, "allow": "yes"})],
            "bad.json: case 0 ('x'): \"expected\" is not a valid decision",
        ),
        ([case("x"), case("x")], "bad.json: case name 'x' is used twice"),
    ],
    ids=[
        "json",
        "shape",
        "two-keys",
        "visible-expected",
        "entrypoint",
        "name",
        "input",
        "data",
        "unknown",
        "partial",
        "types",
        "dupe",
    ],
)
def test_malformed_cases_name_file_and_case(tmp_path: Path, content: Any, message: str) -> None:
    write_cases(tmp_path / "cases" / "bad.json", content)
    with pytest.raises(ConformanceCaseError) as caught:
        load_cases(tmp_path / "cases")
    assert message in caught.value.message


def test_missing_cases_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConformanceCaseError, match="do not exist"):
        load_cases(tmp_path / "nothing")


def test_default_cases_path_is_inside_the_policy_folder(tmp_path: Path) -> None:
    assert cases_path(tmp_path, None) == tmp_path / "conformance"
    assert cases_path(tmp_path, tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert cases_path(None, None) is None


def test_overlay_merges_objects_and_replaces_everything_else() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": [1], "c": "s"}
    overlay = {"a": {"y": [3], "z": {"n": 1}}, "b": {"now": "object"}, "d": None}
    assert overlay_data(base, overlay) == {
        "a": {"x": 1, "y": [3], "z": {"n": 1}},
        "b": {"now": "object"},
        "c": "s",
        "d": None,
    }
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": [1], "c": "s"}  # not modified


def test_report_check_raises_with_every_mismatch(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    (policy / "gateway").mkdir(parents=True)
    (policy / "gateway" / "decision.rego").write_text(ALLOW_ALL)
    write_cases(
        tmp_path / "cases.json",
        [case("plain"), case("overlaid", data={"settings": {"rule": "other"}})],
    )
    report = check_embedded(policy, load_cases(tmp_path / "cases.json"))
    assert (report.total, report.passed, report.failed) == (2, 1, 1)
    with pytest.raises(ConformanceFailed) as caught:
        report.check()
    assert "fails 1 of 2 conformance cases" in caught.value.message
    assert 'cases.json: case \'overlaid\': rule expected "r", got "other"' in caught.value.message
