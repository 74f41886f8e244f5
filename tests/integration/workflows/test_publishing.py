"""Publishing versioned workflows and running them, on SQLite and PostgreSQL: content
addressing, refusals, drift, provenance, and what policy sees of the workflow."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.executor import PlanRefused
from gateway.executor.errors import WorkflowDrifted
from gateway.store.tables import workflow_versions
from gateway.workflows.errors import (
    WorkflowInvalid,
    WorkflowNotFound,
    WorkflowRefused,
    WorkflowVersionConflict,
)
from tests.e2e.mcp_client import connect
from tests.integration.executor.harness import AGENT
from tests.integration.workflows.harness import AUTHOR, WorkflowParts, workflow_parts
from tests.support.processes import McpUpstreamServer

pytestmark = pytest.mark.anyio


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


async def test_publishing_is_idempotent_and_content_addressed(wf: WorkflowParts) -> None:
    document = wf.manifest()
    first, created = await wf.publish(document)
    assert created and first.id.startswith("wf_") and first.content_hash.startswith("sha256:")
    # The same content in another key order and revision order: the same version.
    reordered = dict(reversed(list(document.items())))
    reordered["policy_revisions"] = ["rev-a", "rev-b", "rev-a"]
    again, created_again = await wf.publish(reordered)
    assert not created_again and (again.id, again.content_hash) == (first.id, first.content_hash)
    [published] = wf.audit("workflow.published")  # recorded once, with its hash
    assert published["workflow"]["hash"] == first.content_hash
    assert published["workflow"]["id"] == first.id
    assert published["principal"]["sub"] == AUTHOR.sub

    # Other content under the same NAME@VERSION is refused, and changes nothing.
    with pytest.raises(WorkflowVersionConflict) as conflict:
        await wf.publish(wf.manifest(description="something else"))
    assert conflict.value.details["published"] == first.content_hash
    [refusal] = wf.audit("workflow.refused")
    assert refusal["error"]["code"] == "workflow_version_conflict"
    with wf.parts.database.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(workflow_versions)).scalar() == 1
    # A new version is a new id.
    second, _ = await wf.publish(wf.manifest("1.1.0", description="something else"))
    assert second.id != first.id
    listing = await wf.workflows.list()
    assert [v["version"] for v in listing[0]["versions"]] == ["1.0.0", "1.1.0"]


async def test_a_published_version_is_immutable_in_the_database(wf: WorkflowParts) -> None:
    published, _ = await wf.publish(wf.manifest())
    with pytest.raises(sa.exc.DatabaseError), wf.parts.database.begin() as conn:
        conn.execute(
            sa.update(workflow_versions)
            .where(workflow_versions.c.id == published.id)
            .values(version="9.9.9")
        )
    assert (await wf.workflows.show("greeter", "1.0.0"))["id"] == published.id


async def test_publishing_is_a_policy_decision(wf: WorkflowParts) -> None:
    with pytest.raises(WorkflowRefused) as refused:
        await wf.publish(wf.manifest(), principal=AGENT)
    assert "may not publish workflows" in refused.value.message
    [entry] = wf.audit("workflow.refused")
    assert entry["principal"]["sub"] == AGENT.sub
    assert entry["decision"]["rule"] == "workflow_publish_denied"
    assert await wf.workflows.list() == []


async def test_a_manifest_must_pin_every_tool_its_plan_calls(wf: WorkflowParts) -> None:
    with pytest.raises(WorkflowInvalid) as invalid:
        await wf.publish(wf.manifest(tools={}))
    assert invalid.value.details["problems"][0]["field"] == "tools.up__echo"
    with pytest.raises(WorkflowInvalid):
        await wf.publish(wf.manifest(version="one"))
    with pytest.raises(WorkflowDrifted) as drifted:
        await wf.publish(wf.manifest(tools={"up__echo": "0" * 64}))
    assert drifted.value.details["drifted"][0]["tool"] == "up__echo"
    assert wf.audit("workflow.published") == []
    # Each refusal is audited with who tried and why, never the caller's plan.
    refused = wf.audit("workflow.refused")
    assert [r["error"]["code"] for r in refused] == [
        "workflow_invalid",
        "workflow_invalid",
        "workflow_drifted",
    ]
    assert all(r["principal"]["sub"] == AUTHOR.sub and "plan" not in r for r in refused)
    assert refused[1]["workflow"] == {"name": "greeter", "version": "one"}


async def test_a_run_of_a_workflow_records_its_hash_and_policy_sees_it(wf: WorkflowParts) -> None:
    published, _ = await wf.publish(wf.manifest())
    run_id, _ = await wf.workflows.submit_run(
        AGENT,
        "greeter@1.0.0",
        {"who": "ada"},
        idempotency_key=None,
        request_id="req_run",
        transport="rest",
    )
    view = await wf.parts.wait(run_id)
    assert view["status"] == "succeeded"
    workflow = view["provenance"]["workflow"]
    assert workflow == {
        "name": "greeter",
        "version": "1.0.0",
        "id": published.id,
        "hash": published.content_hash,
        "channel": None,
    }
    assert view["workflow"] == workflow
    [submitted] = [e for e in wf.audit("run.submitted") if e["run_id"] == run_id]
    assert submitted["provenance"]["workflow"]["hash"] == published.content_hash
    with pytest.raises(WorkflowNotFound):
        await wf.workflows.resolve("greeter@2.0.0")
    with pytest.raises(WorkflowNotFound):
        await wf.workflows.resolve("greeter@prod")  # no such channel yet


async def test_policy_may_allow_ad_hoc_plans_only_to_some_roles(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    settings = {"ad_hoc_plan_roles": ["planner"]}
    async with workflow_parts(database_url, tmp_path, upstream.url, policy_settings=settings) as wf:
        await wf.publish(wf.manifest())
        plan = wf.manifest()["plan"]
        with pytest.raises(PlanRefused) as refused:
            await wf.parts.submit(plan, {})
        assert refused.value.details["decision"]["rule"] == "plan_ad_hoc_denied"
        run_id, _ = await wf.workflows.submit_run(
            AGENT,
            "greeter@1.0.0",
            {"who": "ada"},
            idempotency_key=None,
            request_id="req_run",
            transport="rest",
        )
        assert (await wf.parts.wait(run_id))["status"] == "succeeded"


async def test_a_drifted_tool_blocks_a_run_naming_it(
    database_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # An upstream of its own: its tool's definition changes under the test.
    upstream = McpUpstreamServer.start(tmp_path_factory.mktemp("drifting"))
    try:
        async with workflow_parts(database_url, tmp_path, upstream.url) as wf:
            await wf.publish(wf.manifest())
            async with connect(upstream.url, "unused", "legacy") as direct:
                changed = await direct.call_tool(
                    "set_description", {"tool": "echo", "description": "now does more"}
                )
                assert not changed.is_error
            await wf.parts.executor.deps.catalog.refresh()
            calls_before = len(upstream.calls())
            with pytest.raises(WorkflowDrifted) as drifted:
                await wf.workflows.submit_run(
                    AGENT,
                    "greeter@1.0.0",
                    {"who": "ada"},
                    idempotency_key=None,
                    request_id="req_drift",
                    transport="rest",
                )
            assert "up__echo" in drifted.value.message
            [detail] = drifted.value.details["drifted"]
            assert detail["tool"] == "up__echo" and detail["current"] != detail["pinned"]
            refused = wf.audit("run.refused")
            assert refused[-1]["error"]["code"] == "workflow_drifted"
            assert refused[-1]["workflow"]["name"] == "greeter"
            assert await wf.parts.executor.list(None) == []
            assert len(upstream.calls()) == calls_before
    finally:
        upstream.process.stop()
