"""Comparing runs, on SQLite and PostgreSQL: two runs of one version with the same inputs
differ in nothing; a run of the next version differs in exactly what changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.workflows.run_diff import diff_runs
from tests.integration.executor.harness import AGENT
from tests.integration.workflows.harness import WorkflowParts, workflow_parts
from tests.support.processes import McpUpstreamServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


async def _run(wf: WorkflowParts, ref: str, who: str) -> dict:
    run_id, _ = await wf.workflows.submit_run(
        AGENT, ref, {"who": who}, idempotency_key=None, request_id="req_d", transport="rest"
    )
    return await wf.parts.wait(run_id)


async def test_runs_diff_reports_exactly_the_edit(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with workflow_parts(database_url, tmp_path, upstream.url) as wf:
        await wf.publish(wf.manifest("1.0.0"))
        edited = wf.manifest("1.1.0")
        edited["plan"]["steps"][0]["arguments"] = {"text": "hi ${{ inputs.who }}"}
        second, _ = await wf.publish(edited)
        first_run = await _run(wf, "greeter@1.0.0", "ada")
        same_run = await _run(wf, "greeter@1.0.0", "ada")
        assert diff_runs(first_run, same_run) == {}

        edited_run = await _run(wf, "greeter@1.1.0", "ada")
        differences = diff_runs(first_run, edited_run)
        assert set(differences) == {"workflow", "plan_hash", "steps"}
        assert differences["workflow"]["b"]["hash"] == second.content_hash
        assert differences["steps"] == {
            "changed": {
                "hello": {
                    "arguments": {"a": {"text": "ada"}, "b": {"text": "hi ada"}},
                    "output": {"a": {"result": "ada"}, "b": {"result": "hi ada"}},
                }
            }
        }
