"""Channels and promotion, on SQLite and PostgreSQL: a workflow/promote decision that
may hold the promotion for an approver (never the requester), carried out once,
audited workflow.promoted; rollback is promoting the earlier version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.approvals.errors import SelfApproval
from tests.integration.executor.harness import AGENT, APPROVER
from tests.integration.workflows.harness import AUTHOR, RELEASER, WorkflowParts, workflow_parts
from tests.support.processes import McpUpstreamServer

pytestmark = pytest.mark.anyio

CHANNELS = {
    "workflow_channels": {
        "prod": {"promoter_roles": ["release"], "approvers": ["role:approver"], "ttl_s": 600}
    }
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


@pytest.fixture
async def wf(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> AsyncIterator[WorkflowParts]:
    async with workflow_parts(
        database_url, tmp_path, upstream.url, policy_settings=CHANNELS
    ) as parts:
        await parts.publish(parts.manifest("1.0.0"))
        await parts.publish(parts.manifest("1.1.0", description="better"))
        yield parts


async def _promote(wf: WorkflowParts, who, ref: str, channel: str) -> dict:
    return await wf.workflows.promotions.promote(who, ref, channel, request_id="req_promote")


async def test_promotion_to_prod_needs_an_approver_and_not_the_requester(
    wf: WorkflowParts,
) -> None:
    held = await _promote(wf, RELEASER, "greeter@1.1.0", "prod")
    assert held["status"] == "pending_approval"
    approval_id = held["approval_id"]
    assert (await wf.workflows.show("greeter"))["channels"] == {}
    # Asking again finds the same approval.
    assert (await _promote(wf, RELEASER, "greeter@1.1.0", "prod"))["approval_id"] == approval_id
    with pytest.raises(SelfApproval):
        await wf.parts.approvals.decide(
            approval_id, RELEASER, approve=True, reason=None, channel="rest"
        )
    assert (await wf.workflows.show("greeter"))["channels"] == {}
    assert wf.audit("workflow.promoted") == []

    await wf.parts.approvals.decide(
        approval_id, APPROVER, approve=True, reason="passed staging", channel="rest"
    )
    done = await _promote(wf, RELEASER, "greeter@1.1.0", "prod")
    assert done["status"] == "promoted" and done["approval_id"] == approval_id
    shown = await wf.workflows.show("greeter")
    assert shown["channels"]["prod"]["version"] == "1.1.0"
    [promoted] = wf.audit("workflow.promoted")
    assert promoted["approval_id"] == approval_id
    assert promoted["channel"] == "prod" and promoted["workflow"]["version"] == "1.1.0"
    assert promoted["principal"]["sub"] == RELEASER.sub
    # Runs of the channel run that version.
    run_id, _ = await wf.workflows.submit_run(
        AGENT,
        "greeter@prod",
        {"who": "x"},
        idempotency_key=None,
        request_id="req_r",
        transport="rest",
    )
    view = await wf.parts.wait(run_id)
    assert view["provenance"]["workflow"]["version"] == "1.1.0"
    assert view["provenance"]["workflow"]["channel"] == "prod"


async def test_rollback_is_promoting_the_earlier_version(wf: WorkflowParts) -> None:
    for version in ("1.0.0", "1.1.0", "1.0.0"):
        held = await _promote(wf, RELEASER, f"greeter@{version}", "prod")
        await wf.parts.approvals.decide(
            held["approval_id"], APPROVER, approve=True, reason=None, channel="rest"
        )
        assert (await _promote(wf, RELEASER, f"greeter@{version}", "prod"))["status"] == "promoted"
    shown = await wf.workflows.show("greeter")
    assert shown["channels"]["prod"]["version"] == "1.0.0"
    assert [(h["version"], h["previous_version"]) for h in shown["history"]] == [
        ("1.0.0", None),
        ("1.1.0", "1.0.0"),
        ("1.0.0", "1.1.0"),
    ]
    assert len({h["approval_id"] for h in shown["history"]}) == 3  # one approval each


async def test_a_denied_promotion_is_refused_and_changes_nothing(wf: WorkflowParts) -> None:
    from gateway.workflows.errors import WorkflowRefused

    held = await _promote(wf, RELEASER, "greeter@1.1.0", "prod")
    await wf.parts.approvals.decide(
        held["approval_id"], APPROVER, approve=False, reason="not yet", channel="rest"
    )
    with pytest.raises(WorkflowRefused) as refused:
        await _promote(wf, RELEASER, "greeter@1.1.0", "prod")
    assert "not yet" in refused.value.message
    assert (await wf.workflows.show("greeter"))["channels"] == {}


async def test_who_may_promote_is_policy(wf: WorkflowParts) -> None:
    from gateway.workflows.errors import WorkflowRefused

    # An author promotes to a channel without settings at once; not to prod.
    staged = await _promote(wf, AUTHOR, "greeter@1.0.0", "staging")
    assert staged["status"] == "promoted" and staged["approval_id"] is None
    assert (await _promote(wf, AUTHOR, "greeter@1.0.0", "staging"))["status"] == "unchanged"
    with pytest.raises(WorkflowRefused):
        await _promote(wf, AUTHOR, "greeter@1.0.0", "prod")
    with pytest.raises(WorkflowRefused):
        await _promote(wf, AGENT, "greeter@1.0.0", "dev")
    refused = wf.audit("workflow.refused")
    assert {r["decision"]["rule"] for r in refused} == {"workflow_promote_denied"}
    assert (await wf.workflows.show("greeter"))["channels"].keys() == {"staging"}
