"""Scenarios as tests, on SQLite and PostgreSQL: run offline against the workflow with
the gateway's policy and recorded results (no upstream called, nothing written);
publishing refuses a workflow whose scenarios fail unless forced, and records that it
was forced."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.workflows.errors import ScenariosFailed, WorkflowInvalid
from tests.integration.workflows.harness import AUTHOR, WorkflowParts, workflow_parts
from tests.support.processes import McpUpstreamServer

pytestmark = pytest.mark.anyio

SCENARIOS = {
    "greets-ada": {
        "inputs": {"who": "ada"},
        "results": {"hello": {"output": {"result": "ada"}}, "shout": {"output": {"result": "ADA"}}},
        "expect": {"status": "succeeded", "steps": {"hello": "succeeded", "shout": "succeeded"}},
    },
    "upstream-error": {
        "inputs": {"who": "bob"},
        "results": {"hello": {"error": {"code": "tool_error", "message": "down"}}},
        "expect": {"status": "failed", "error": "step_failed", "steps": {"shout": "not_run"}},
    },
    "an-agent-without-grants-is-refused": {
        "inputs": {"who": "eve"},
        "subject": {"sub": "agent:nobody", "roles": []},
        "expect": {"status": "refused"},
    },
}


def _manifest(wf: WorkflowParts, version: str, shout_when: str | None) -> dict[str, Any]:
    shout: dict[str, Any] = {
        "id": "shout",
        "tool": "up__echo",
        "needs": ["hello"],
        "arguments": {"text": "${{ steps.hello.output.result }}"},
    }
    if shout_when is not None:
        shout["when"] = shout_when
    document = wf.manifest(version, scenarios=SCENARIOS)
    document["plan"]["steps"].append(shout)
    return document


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


@pytest.fixture
async def wf(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> AsyncIterator[WorkflowParts]:
    async with workflow_parts(database_url, tmp_path, upstream.url) as parts:
        yield parts


async def test_scenarios_fail_against_the_broken_workflow_and_pass_against_the_fix(
    wf: WorkflowParts, upstream: McpUpstreamServer
) -> None:
    calls_before = len(upstream.calls())
    # Broken: a condition that is never true skips the second step.
    broken = _manifest(wf, "1.0.0", "inputs.who == 'nobody'")
    results = {r["scenario"]: r for r in await wf.workflows.test(AUTHOR, broken, request_id="t")}
    assert not results["greets-ada"]["passed"]
    assert results["greets-ada"]["mismatches"] == ["step shout skipped, expected succeeded"]
    assert results["upstream-error"]["passed"]
    assert results["an-agent-without-grants-is-refused"]["passed"]

    fixed = _manifest(wf, "1.0.1", None)
    results = await wf.workflows.test(AUTHOR, fixed, request_id="t")
    assert all(r["passed"] for r in results), results
    outcome = next(r for r in results if r["scenario"] == "greets-ada")["outcome"]
    # The second step's arguments come from the first's recorded output, decided by policy.
    assert outcome["steps"]["shout"]["arguments"] == {"text": "ada"}
    assert outcome["steps"]["shout"]["decision"]["rule"] == "grant"

    # A test calls no upstream and writes nothing.
    assert len(upstream.calls()) == calls_before
    assert await wf.parts.executor.list(None) == []
    assert await wf.workflows.list() == []


async def test_publish_refuses_failing_scenarios_unless_forced(wf: WorkflowParts) -> None:
    broken = _manifest(wf, "1.0.0", "inputs.who == 'nobody'")
    with pytest.raises(ScenariosFailed) as failed:
        await wf.publish(broken)
    assert [s["scenario"] for s in failed.value.details["scenarios"]] == ["greets-ada"]
    [refused] = wf.audit("workflow.refused")
    assert refused["error"]["code"] == "workflow_scenarios_failed"
    assert await wf.workflows.list() == []

    _, created = await wf.workflows.publish(
        AUTHOR,
        broken,
        request_id="req_force",
        force=True,
    )
    assert created
    [entry] = wf.audit("workflow.published")
    assert entry["forced"] is True
    assert entry["scenarios"] == {"passed": 2, "failed": ["greets-ada"]}

    fixed, _ = await wf.publish(_manifest(wf, "1.0.1", None))
    entries = wf.audit("workflow.published")
    assert entries[-1]["forced"] is False and entries[-1]["workflow"]["hash"] == fixed.content_hash


async def test_a_malformed_scenario_is_refused_naming_it(wf: WorkflowParts) -> None:
    document = wf.manifest(scenarios={"bad": {"expect": {"status": "maybe"}}})
    with pytest.raises(WorkflowInvalid) as invalid:
        await wf.publish(document)
    assert invalid.value.details["problems"][0]["field"].startswith("scenarios.bad.expect")
