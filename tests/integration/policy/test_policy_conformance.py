"""Conformance: the same cases, run on the embedded engine and on a real OPA server,
give the decisions the cases expect, so the two engines agree (architecture.md §5).

Runs every case shipped in policies/conformance/ and a small fixture set that pins the
runner itself: data overlays (objects merged, lists replaced, new keys added) and a
wrong expectation that must be reported on both engines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.conformance import (
    ConformanceCase,
    ConformanceReport,
    check_embedded,
    load_cases,
    run_cases,
)
from gateway.policy.opa_conformance import OpaCaseRunner
from tests.support.fixture_policy import FIXTURE_DATA, write_fixture_policy
from tests.support.opa import OpaServer
from tests.support.processes import POLICIES


def policy_input(tool: str, arguments: dict[str, Any], **subject: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "subject": {
            "sub": "agent:conformance",
            "iss": "https://issuer.test",
            "roles": ["agent"],
            "scopes": [],
            "tenant": None,
            "act_chain": [],
            "claims": {},
            **subject,
        },
        "action": "tools/call",
        "resource": {
            "tool": tool,
            "server": tool.split("__")[0],
            "upstream_tool": tool.split("__")[1],
            "annotations": {},
            "risk": "low",
            "definition_hash": "0" * 64,
            "labels": [],
        },
        "arguments": arguments,
        "context": {
            "time": "2026-11-21T10:00:00.000Z",
            "request_id": "req_conformance",
            "transport": "rest",
            "run_id": None,
            "step_id": None,
            "client": {"ip": "127.0.0.1", "user_agent": "pytest"},
        },
    }


def decision(
    allow: bool,
    rule: str,
    reasons: list[str],
    *,
    approval: bool = False,
    redact: tuple[str, ...] = (),
    approvers: tuple[str, ...] = (),
    ttl: int | None = None,
) -> dict[str, Any]:
    obligations: dict[str, Any] = {"redact": list(redact), "approvers": list(approvers)}
    if ttl is not None:
        obligations["approval_ttl_s"] = ttl
    return {
        "allow": allow,
        "require_approval": approval,
        "reasons": reasons,
        "obligations": obligations,
        "rule": rule,
    }


FIXTURE_CASES = [
    {
        "name": "granted tool is allowed, secrets redacted",
        "input": policy_input("demo__echo", {"text": "hi", "api_key": "k"}),
        "expected": decision(True, "grant", ["allowed by grant"], redact=("/arguments/api_key",)),
    },
    {
        "name": "approval grant needs approval",
        "input": policy_input("demo__delete", {}),
        "expected": decision(
            True,
            "approval_grant",
            ["demo__delete needs approval by role:ops"],
            approval=True,
            approvers=("role:ops",),
            ttl=3600,
        ),
    },
    {
        "name": "a tool without grant is denied",
        "input": policy_input("demo__read", {"path": "/etc/passwd"}),
        "expected": decision(False, "default_deny", ["no grant for this tool"]),
    },
    {
        "name": "overlay replaces the grant list",
        "input": policy_input("demo__echo", {}),
        "data": {"fixture": {"grants": [{"role": "ops", "tool": "demo__echo"}]}},
        "expected": decision(False, "default_deny", ["no grant for this tool"]),
    },
    {
        "name": "overlay merges objects and keeps the other settings",
        "input": policy_input("demo__echo", {}, act_chain=[{"sub": "user:mallory"}]),
        "data": {"fixture": {"blocked_actors": ["user:mallory"]}},
        "expected": decision(False, "blocked_actor", ["a blocked actor is in the chain"]),
    },
    {
        "name": "overlay adds a key and changes a number",
        "input": policy_input("demo__delete", {}),
        "data": {"fixture": {"ttl_s": 60, "unused": {"nested": [1, 'a"b']}}, "new": True},
        "expected": decision(
            True,
            "approval_grant",
            ["demo__delete needs approval by role:ops"],
            approval=True,
            approvers=("role:ops",),
            ttl=60,
        ),
    },
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def fixture_policy(workdir: Path) -> Path:
    policy = write_fixture_policy(workdir / "policy", FIXTURE_DATA["grants"])
    (policy / "conformance").mkdir()
    (policy / "conformance" / "fixture.json").write_text(json.dumps({"cases": FIXTURE_CASES}))
    return policy


def start_opa(policy: Path, log_path: Path) -> OpaServer:
    # The modules and data.json only: OPA would load every other *.json file as data,
    # conformance case files included.
    return OpaServer([policy / "gateway", policy / "data.json"], log_path).start()


@pytest.fixture(scope="module")
def fixture_opa(fixture_policy: Path, workdir: Path) -> Iterator[OpaServer]:
    server = start_opa(fixture_policy, workdir / "opa-fixture.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shipped_opa(workdir: Path) -> Iterator[OpaServer]:
    server = start_opa(POLICIES, workdir / "opa-shipped.log")
    yield server
    server.stop()


def on_opa(server: OpaServer, cases: list[ConformanceCase]) -> ConformanceReport:
    with OpaCaseRunner(server.url) as runner:
        return run_cases(cases, runner, engine="opa")


def test_shipped_cases_pass_on_the_embedded_engine() -> None:
    cases = load_cases(POLICIES / "conformance")
    assert len(cases) > 0, "policies/conformance/ holds no cases"
    report = check_embedded(POLICIES, cases)
    assert report.ok, report.describe()
    assert report.passed == len(cases)


def test_shipped_cases_pass_on_opa(shipped_opa: OpaServer) -> None:
    cases = load_cases(POLICIES / "conformance")
    assert len(cases) > 0, "policies/conformance/ holds no cases"
    report = on_opa(shipped_opa, cases)
    assert report.ok, report.describe()
    assert report.passed == len(cases)


def test_fixture_cases_pass_on_both_engines(fixture_policy: Path, fixture_opa: OpaServer) -> None:
    cases = load_cases(fixture_policy / "conformance")
    assert len(cases) == len(FIXTURE_CASES)
    embedded = check_embedded(fixture_policy, cases)
    opa = on_opa(fixture_opa, cases)
    assert embedded.ok, embedded.describe()
    assert opa.ok, opa.describe()


def test_a_wrong_expectation_is_a_mismatch_on_both_engines(
    fixture_policy: Path, fixture_opa: OpaServer, workdir: Path
) -> None:
    wrong = [
        {**FIXTURE_CASES[0], "name": "wrong rule", "expected": {**FIXTURE_CASES[0]["expected"]}},
        {**FIXTURE_CASES[3], "name": "overlay ignored would allow"},
    ]
    wrong[0]["expected"]["rule"] = "something_else"
    wrong[1]["expected"] = decision(True, "grant", ["allowed by grant"])
    path = workdir / "wrong.json"
    path.write_text(json.dumps({"cases": wrong}))
    cases = load_cases(path)
    for report in (check_embedded(fixture_policy, cases), on_opa(fixture_opa, cases)):
        assert report.failed == 2 and report.passed == 0
        first = report.mismatches[0]
        assert (first.case, first.field) == ("wrong rule", "rule")
        assert (first.expected, first.actual) == ("something_else", "grant")
        assert {m.field for m in report.mismatches if m.case == "overlay ignored would allow"} == {
            "allow",
            "reasons",
            "rule",
        }
        assert "wrong.json: case 'wrong rule': rule expected" in report.describe()


def test_an_unreachable_opa_is_an_error_per_case(fixture_policy: Path) -> None:
    cases = load_cases(fixture_policy / "conformance")[:2]
    with OpaCaseRunner("http://127.0.0.1:9", timeout_s=1) as runner:
        report = run_cases(cases, runner, engine="opa")
    assert report.failed == 2
    assert all(m.field == "error" and "unreachable" in m.actual for m in report.mismatches)
