"""The embedded engine (OPA-compiled Wasm) on small policy folders written for each case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import PolicyError, PolicyLoadError
from gateway.policy.embedded import EmbeddedEngine, compile_policy
from gateway.policy.engine import FAIL_CLOSED_RULE, decide
from gateway.policy.folder import policy_files

HEADER = "package gateway\n\nimport rego.v1\n\n"

ALLOW_ALL = HEADER + 'decision := {"allow": true, "reasons": ["ok"], "rule": "all"}\n'

# Echoes a string argument back and reports which string checks hold for it, so a
# test can compare what the policy saw with what the gateway sent.
ECHO = (
    HEADER
    + """
s := input.arguments.s

key_paths contains concat("/", ["", "arguments", "o", k]) if some k, _ in input.arguments.o

checks contains "in_data" if s in data.expected

checks contains "backslash" if contains(s, "\\\\")

checks contains "quote" if contains(s, "\\"")

checks contains "newline" if contains(s, "\\n")

checks contains "nul" if contains(s, "\\u0000")

checks contains "is_a_backslash_b" if s == "a\\\\b"

checks contains "key_found" if input.arguments.o[s] == 1

decision := {
	"allow": true,
	"reasons": [s, concat("", ["<", s, ">"]), json.marshal(s), concat("|", split(s, "/"))],
	"rule": concat(",", sort(checks)),
	"obligations": {"redact": sort(key_paths)},
}
"""
)


def expected_checks(value: str) -> str:
    """The checks OPA would report for `value` (see ECHO)."""
    holds = {
        "in_data": value in STRINGS,
        "backslash": "\\" in value,
        "quote": '"' in value,
        "newline": "\n" in value,
        "nul": "\u0000" in value,
        "is_a_backslash_b": value == "a\\b",
        "key_found": True,
    }
    return ",".join(sorted(k for k, v in holds.items() if v))


def write_policy(root: Path, files: dict[str, str | dict[str, Any]]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


# --- loading -------------------------------------------------------------------------


def test_compile_error_names_the_file(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        {
            "gateway/ok.rego": ALLOW_ALL,
            "gateway/broken.rego": HEADER + "helper if {\n\tinput.x ==\n}\n",
        },
    )
    with pytest.raises(PolicyLoadError) as caught:
        EmbeddedEngine(tmp_path)
    assert "does not compile" in caught.value.message
    assert "gateway/broken.rego:" in caught.value.message  # OPA's own place of the error


def test_folder_without_modules_is_refused(tmp_path: Path) -> None:
    # A test module alone is not a policy.
    write_policy(tmp_path, {"data.json": {"x": 1}, "decision_test.rego": ALLOW_ALL})
    with pytest.raises(PolicyLoadError, match=r"holds no \.rego modules"):
        EmbeddedEngine(tmp_path)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="does not exist"):
        EmbeddedEngine(tmp_path / "absent")


def test_invalid_data_json_names_the_file(tmp_path: Path) -> None:
    write_policy(tmp_path, {"decision.rego": ALLOW_ALL, "team/data.json": '{"a": [1,'})
    with pytest.raises(PolicyLoadError) as caught:
        EmbeddedEngine(tmp_path)
    assert "team/data.json is not valid JSON" in caught.value.message


def test_policy_load_error_is_a_policy_error() -> None:
    assert issubclass(PolicyLoadError, PolicyError)


def test_test_modules_are_excluded(tmp_path: Path) -> None:
    write_policy(tmp_path, {"gateway/decision.rego": ALLOW_ALL})
    before = compile_policy(tmp_path)
    # Even a test module that does not compile is not part of the policy.
    write_policy(tmp_path, {"gateway/decision_test.rego": "package gateway_test\n\n!!!\n"})
    after = compile_policy(tmp_path)
    assert after.modules == ("gateway/decision.rego",)
    assert after.revision == before.revision
    modules, _ = policy_files(tmp_path)
    assert [m.name for m in modules] == ["decision.rego"]


def test_conformance_folder_is_not_data(tmp_path: Path) -> None:
    write_policy(tmp_path, {"decision.rego": ALLOW_ALL, "conformance/case.json": {"input": {}}})
    _, data = policy_files(tmp_path)
    assert data == []


# --- revision ------------------------------------------------------------------------


def test_revision_is_a_stable_content_hash(tmp_path: Path) -> None:
    files: dict[str, str | dict[str, Any]] = {
        "gateway/decision.rego": ALLOW_ALL,
        "data.json": {"limits": {"max": 3}},
    }
    one = write_policy(tmp_path / "one", files)
    two = write_policy(tmp_path / "two", files)
    first = EmbeddedEngine(one).revision
    assert first.startswith("sha256:")
    assert EmbeddedEngine(one).revision == first  # recompiling changes nothing
    assert EmbeddedEngine(two).revision == first  # the folder's location is not content


def test_revision_ignores_data_formatting(tmp_path: Path) -> None:
    a = write_policy(tmp_path / "a", {"p.rego": ALLOW_ALL, "data.json": '{"x": 1, "y": [1]}'})
    b = write_policy(tmp_path / "b", {"p.rego": ALLOW_ALL, "data.json": '{ "y":[1],\n"x":1 }'})
    assert EmbeddedEngine(a).revision == EmbeddedEngine(b).revision


def test_revision_changes_with_a_module(tmp_path: Path) -> None:
    write_policy(tmp_path, {"gateway/decision.rego": ALLOW_ALL})
    before = EmbeddedEngine(tmp_path).revision
    write_policy(tmp_path, {"gateway/decision.rego": ALLOW_ALL + "\n# a comment\n"})
    assert EmbeddedEngine(tmp_path).revision != before


def test_revision_changes_with_a_module_name(tmp_path: Path) -> None:
    a = write_policy(tmp_path / "a", {"x.rego": ALLOW_ALL})
    b = write_policy(tmp_path / "b", {"y.rego": ALLOW_ALL})
    assert EmbeddedEngine(a).revision != EmbeddedEngine(b).revision


def test_revision_changes_with_data(tmp_path: Path) -> None:
    write_policy(tmp_path, {"decision.rego": ALLOW_ALL, "data.json": {"max": 3}})
    before = EmbeddedEngine(tmp_path).revision
    write_policy(tmp_path, {"data.json": {"max": 4}})
    after = EmbeddedEngine(tmp_path).revision
    assert after != before
    write_policy(tmp_path, {"extra/data.json": {}})
    assert EmbeddedEngine(tmp_path).revision != after


def test_revision_changes_with_extra_data(tmp_path: Path) -> None:
    write_policy(tmp_path, {"decision.rego": ALLOW_ALL})
    plain = EmbeddedEngine(tmp_path).revision
    assert EmbeddedEngine(tmp_path, extra_data={"k": 1}).revision != plain
    assert (
        EmbeddedEngine(tmp_path, extra_data={"k": 1}).revision
        == EmbeddedEngine(tmp_path, extra_data={"k": 1}).revision
    )


# --- data ----------------------------------------------------------------------------


def test_data_files_mount_under_their_folder(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        {
            "gateway/decision.rego": HEADER
            + 'decision := {"allow": true, "reasons": [data.top, data.x.name, data.x.y.name]}\n',
            "data.json": {"top": "root"},
            "x/data.json": {"name": "in x"},
            "x/y/data.json": {"name": "in x/y"},
        },
    )
    decision = EmbeddedEngine(tmp_path).evaluate_sync({})
    assert decision.reasons == ("root", "in x", "in x/y")


def test_extra_data_is_visible(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        {"p.rego": HEADER + 'decision := {"allow": data.settings.open, "reasons": []}\n'},
    )
    engine = EmbeddedEngine(tmp_path, extra_data={"settings": {"open": True}})
    assert engine.evaluate_sync({}).allow is True


def test_data_files_sharing_a_prefix_are_merged(tmp_path: Path) -> None:
    # OPA merges x/data.json and x/y/data.json into one data.x; so must we.
    write_policy(
        tmp_path,
        {
            "p.rego": HEADER
            + 'decision := {"allow": true, "reasons": [data.x.name, data.x.y.name, data.x.z]}\n',
            "x/data.json": {"name": "in x"},
            "x/y/data.json": {"name": "in x/y"},
            "data.json": {"x": {"z": "from the root file"}},
        },
    )
    decision = EmbeddedEngine(tmp_path).evaluate_sync({})
    assert decision.reasons == ("in x", "in x/y", "from the root file")


def test_extra_data_merges_with_data_files(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        {
            "p.rego": HEADER + 'decision := {"allow": true, "reasons": data.cfg.names}\n',
            "data.json": {"cfg": {"names": ["from file"]}},
        },
    )
    with pytest.raises(PolicyLoadError) as caught:
        EmbeddedEngine(tmp_path, extra_data={"cfg": {"names": ["from config"]}})
    assert "policy.data in the config conflicts" in caught.value.message
    assert "data.cfg.names" in caught.value.message
    (tmp_path / "p.rego").write_text(
        HEADER + 'decision := {"allow": data.cfg.open, "reasons": data.cfg.names}\n'
    )
    engine = EmbeddedEngine(tmp_path, extra_data={"cfg": {"open": True}})
    decision = engine.evaluate_sync({})
    assert decision.allow is True
    assert decision.reasons == ("from file",)


def test_conflicting_data_files_name_the_file_and_path(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        {"p.rego": ALLOW_ALL, "data.json": {"x": {"max": 1}}, "x/data.json": {"max": 2}},
    )
    with pytest.raises(PolicyLoadError) as caught:
        EmbeddedEngine(tmp_path)
    assert "policy data x/data.json conflicts" in caught.value.message
    assert "data.x.max" in caught.value.message


def test_root_data_file_must_be_an_object(tmp_path: Path) -> None:
    write_policy(tmp_path, {"p.rego": ALLOW_ALL, "data.json": [1, 2]})
    with pytest.raises(PolicyLoadError, match=r"data\.json: data must be a JSON object"):
        EmbeddedEngine(tmp_path)
    # Below the root, any JSON value is fine: it is wrapped in its folder's key.
    (tmp_path / "data.json").unlink()
    write_policy(tmp_path, {"lists/data.json": [1, 2]})
    EmbeddedEngine(tmp_path)


# --- evaluation failures fail closed -------------------------------------------------


TO_NUMBER = HEADER + 'decision := {"allow": to_number(input.arguments.x) > 0, "reasons": []}\n'


@pytest.mark.anyio
async def test_builtin_error_leaves_the_decision_undefined_a_deny(tmp_path: Path) -> None:
    # OPA's Wasm evaluates built-ins as `opa eval` does: a failing one leaves its
    # expression undefined (docs/policies.md, "Built-ins"), hence no decision: a deny.
    engine = EmbeddedEngine(write_policy(tmp_path, {"p.rego": TO_NUMBER}))
    assert (await engine.evaluate({"arguments": {"x": "5"}})).allow is True
    with pytest.raises(PolicyError, match="undefined"):
        await engine.evaluate({"arguments": {"x": "abc"}})
    decision = await decide(engine, {"arguments": {"x": "abc"}}, timeout_s=5)
    assert decision.allow is False
    assert decision.rule == FAIL_CLOSED_RULE
    assert decision.engine == "embedded"
    assert decision.revision == engine.revision
    assert "fail closed" in decision.reasons[0]


@pytest.mark.anyio
async def test_undefined_decision_is_a_deny(tmp_path: Path) -> None:
    policy = HEADER + 'decision := {"allow": true} if input.arguments.x == 1\n'
    engine = EmbeddedEngine(write_policy(tmp_path, {"p.rego": policy}))
    assert (await decide(engine, {"arguments": {"x": 1}}, timeout_s=5)).allow is True
    decision = await decide(engine, {"arguments": {"x": 2}}, timeout_s=5)
    assert decision.allow is False
    assert decision.rule == FAIL_CLOSED_RULE
    assert "undefined" in decision.reasons[0]


def test_policy_without_a_gateway_decision_is_refused_at_load(tmp_path: Path) -> None:
    # OPA compiles the gateway/decision entrypoint or nothing: a policy in another
    # package never gets to serve (and deny every call).
    policy = 'package other\n\nimport rego.v1\n\ndecision := {"allow": true}\n'
    with pytest.raises(PolicyLoadError, match='"gateway/decision" does not refer to a rule'):
        EmbeddedEngine(write_policy(tmp_path, {"p.rego": policy}))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "where"),
    [
        ('{"allow": "true"}', "allow"),
        ('{"allowed": true}', "allow"),
        ('{"allow": true, "reasons": "yes"}', "reasons"),
        ('{"allow": true, "obligations": {"redact": ["arguments/x"]}}', "redact"),
        ("true", "result"),
    ],
)
async def test_malformed_result_is_a_deny(tmp_path: Path, value: str, where: str) -> None:
    engine = EmbeddedEngine(write_policy(tmp_path, {"p.rego": HEADER + f"decision := {value}\n"}))
    decision = await decide(engine, {}, timeout_s=5)
    assert decision.allow is False
    assert decision.rule == FAIL_CLOSED_RULE
    assert "malformed" in decision.reasons[0]
    assert where in decision.reasons[0]


@pytest.mark.anyio
async def test_conflicting_values_are_a_deny(tmp_path: Path) -> None:
    policy = (
        HEADER
        + 'decision := {"allow": true} if input.a\n'
        + 'decision := {"allow": false} if input.b\n'
    )
    engine = EmbeddedEngine(write_policy(tmp_path, {"p.rego": policy}))
    assert (await decide(engine, {"a": True, "b": False}, timeout_s=5)).allow is True
    decision = await decide(engine, {"a": True, "b": True}, timeout_s=5)
    assert decision.allow is False
    assert decision.rule == FAIL_CLOSED_RULE


# --- input strings reach the policy exactly as sent ----------------------------------
# The input goes to the Wasm module as UTF-8 JSON. These cases pin that the policy sees
# the same string OPA would: equal to the same data value, equal to the same Rego
# literal, found by `contains`, and returned unchanged.

STRINGS = [
    "plain",
    'quo"te',
    "a\\b",
    "line\nbreak",
    "tab\there",
    "nul\u0000byte",
    "caf\u00e9",
    "\u65e5\u672c/\U0001f600",
    "\u2028\u2029",
    "\\u0041",
    '\\"',
]


@pytest.fixture
def echo_engine(tmp_path: Path) -> EmbeddedEngine:
    return EmbeddedEngine(
        write_policy(tmp_path, {"echo.rego": ECHO, "data.json": {"expected": STRINGS}})
    )


def echo(engine: EmbeddedEngine, value: str) -> Any:
    return engine.evaluate_sync({"arguments": {"s": value, "o": {value: 1}}})


@pytest.mark.parametrize("value", STRINGS)
def test_strings_round_trip_like_opa(echo_engine: EmbeddedEngine, value: str) -> None:
    decision = echo(echo_engine, value)
    assert decision.reasons[:2] == (value, f"<{value}>")
    assert json.loads(decision.reasons[2]) == value
    assert decision.reasons[3] == "|".join(value.split("/"))
    assert decision.obligations.redact == (f"/arguments/o/{value}",)


@pytest.mark.parametrize("value", STRINGS)
def test_string_comparisons_match_like_opa(echo_engine: EmbeddedEngine, value: str) -> None:
    assert echo(echo_engine, value).rule == expected_checks(value)


@pytest.mark.parametrize(
    "value", ["a\\\\b", 'quo\\"te', "A", "line\\nbreak", "nul\\u0000byte", "cafe\u0301"]
)
def test_strings_that_look_like_escapes_are_matched_exactly(
    echo_engine: EmbeddedEngine, value: str
) -> None:
    # Each looks like an escaped (or differently normalized) form of an expected string:
    # every check decides exactly as OPA does, none more loosely.
    assert echo(echo_engine, value).rule == expected_checks(value)
