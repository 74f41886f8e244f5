"""Plan review, on SQLite and PostgreSQL: a plan policy (or its workflow) wants reviewed
waits before any step, durably and holding nothing, until one approver decides; the
submitter cannot; every step is still decided when it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.approvals.errors import SelfApproval
from gateway.audit import read_entries
from gateway.executor.review import REVIEW_TOOL
from tests.integration.executor.harness import AGENT, APPROVER
from tests.integration.workflows.harness import workflow_parts
from tests.support.processes import McpUpstreamServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

REVIEW = {"plan_review": {"ad_hoc_min_risk": "high", "approvers": ["role:approver"], "ttl_s": 600}}
# The upstream's write tool is high risk (the admin's config says so).
RISK = {"write": "high"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


def _plan(label: str) -> dict:
    # up__write is high risk, and needs its own approval per call by its grant;
    # up__effect is a plain step before it.
    return {
        "name": "reviewed",
        "steps": [
            {"id": "first", "tool": "up__effect", "arguments": {"label": label}},
            {
                "id": "write",
                "tool": "up__write",
                "needs": ["first"],
                "arguments": {"key": label, "value": "v", "password": "hunter2"},
            },
        ],
    }


def _effects(upstream: McpUpstreamServer, label: str) -> list[dict]:
    return [c for c in upstream.calls() if label in str(c.get("arguments"))]


async def test_a_reviewed_plan_waits_before_any_step_and_survives_a_restart(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    label = f"review-{tmp_path.name}"
    async with workflow_parts(
        database_url, tmp_path / "a", upstream.url, policy_settings=REVIEW, risk=RISK
    ) as wf:
        run_id = await wf.parts.submit(_plan(label), {})
        view = await wf.parts.executor.get(run_id, None)
        assert view["status"] == "waiting"
        assert view["review"]["status"] == "pending"
        approval_id = view["review"]["approval_id"]
        assert all(s["status"] == "pending" and not s["attempts"] for s in view["steps"])
        approval = await wf.parts.approvals.get_fresh(approval_id)
        assert approval.tool == REVIEW_TOOL
        shown = approval.arguments_display
        # The approver sees the whole DAG with its arguments, redacted per policy.
        assert [s["id"] for s in shown["plan"]["steps"]] == ["first", "write"]
        assert shown["plan"]["steps"][0]["arguments"] == {"label": label}
        assert shown["plan"]["steps"][1]["arguments"]["password"] != "hunter2"
        assert shown["run_id"] == run_id
        # The submitter may not review its own plan; nothing changes.
        with pytest.raises(SelfApproval):
            await wf.parts.approvals.decide(
                approval_id, AGENT, approve=True, reason=None, channel="rest"
            )
        assert (await wf.parts.executor.get(run_id, None))["review"]["status"] == "pending"
    assert _effects(upstream, label) == []

    # A new process on the same database: the run still waits, and runs once approved.
    async with workflow_parts(
        database_url, tmp_path / "b", upstream.url, policy_settings=REVIEW, risk=RISK
    ) as wf:
        view = await wf.parts.executor.get(run_id, None)
        assert view["status"] == "waiting" and view["review"]["status"] == "pending"
        await wf.parts.approvals.decide(
            approval_id, APPROVER, approve=True, reason="looks right", channel="rest"
        )

        # Approved: the steps run, and each is decided again: up__write waits for its
        # own approval (its grant asks for one).
        async def reviewed() -> bool:
            current = await wf.parts.executor.get(run_id, None)
            return current["review"]["status"] == "approved"

        await eventually_async(reviewed, "the review recorded as approved")

        async def step_approval() -> str | None:
            current = await wf.parts.executor.get(run_id, None)
            step = next(s for s in current["steps"] if s["id"] == "write")
            return step["approval_id"] if step["status"] == "waiting" else None

        write_approval = await eventually_async(step_approval, "write waits for approval")
        assert write_approval != approval_id
        await wf.parts.approvals.decide(
            write_approval, APPROVER, approve=True, reason="ok", channel="rest"
        )
        done = await wf.parts.wait(run_id)
        assert done["status"] == "succeeded"
        kinds = [e.kind for e in read_entries(wf.parts.database, ref=run_id)]
        assert kinds.index("run.review_approved") < kinds.index("step.started")
    assert len(_effects(upstream, label)) == 2


async def test_a_denied_review_fails_the_run_with_no_step_run(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    label = f"denied-{tmp_path.name}"
    async with workflow_parts(
        database_url, tmp_path, upstream.url, policy_settings=REVIEW, risk=RISK
    ) as wf:
        run_id = await wf.parts.submit(_plan(label), {})
        view = await wf.parts.executor.get(run_id, None)
        await wf.parts.approvals.decide(
            view["review"]["approval_id"], APPROVER, approve=False, reason="no", channel="rest"
        )
        done = await wf.parts.wait(run_id)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "plan_review_denied"
        assert all(s["status"] == "cancelled" and not s["attempts"] for s in done["steps"])
    assert _effects(upstream, label) == []


async def test_a_plan_of_low_risk_tools_needs_no_review(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with workflow_parts(
        database_url, tmp_path, upstream.url, policy_settings=REVIEW, risk=RISK
    ) as wf:
        plan = {"steps": [{"id": "only", "tool": "up__effect", "arguments": {"label": "x"}}]}
        run_id = await wf.parts.submit(plan, {})
        done = await wf.parts.wait(run_id)
        assert done["status"] == "succeeded" and done["review"] is None


async def test_a_workflow_may_ask_for_a_review_policy_does_not(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with workflow_parts(database_url, tmp_path, upstream.url) as wf:
        document = wf.manifest(approvals={"plan": {"approvers": ["role:approver"]}})
        await wf.publish(document)
        run_id, _ = await wf.workflows.submit_run(
            AGENT,
            "greeter@1.0.0",
            {"who": "ada"},
            idempotency_key=None,
            request_id="req_r",
            transport="rest",
        )
        view = await wf.parts.executor.get(run_id, None)
        assert view["status"] == "waiting" and view["review"]["status"] == "pending"
        approval = await wf.parts.approvals.get_fresh(view["review"]["approval_id"])
        assert approval.approvers == ("role:approver",)
        await wf.parts.approvals.decide(
            approval.id, APPROVER, approve=True, reason=None, channel="rest"
        )
        assert (await wf.parts.wait(run_id))["status"] == "succeeded"


async def test_a_review_nobody_decides_expires_and_the_run_fails(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    label = f"expired-{tmp_path.name}"
    short = {"plan_review": {**REVIEW["plan_review"], "ttl_s": 1}}
    async with workflow_parts(
        database_url, tmp_path, upstream.url, policy_settings=short, risk=RISK
    ) as wf:
        run_id = await wf.parts.submit(_plan(label), {})
        done = await wf.parts.wait(run_id)  # the approvals sweeper expires it
        assert done["status"] == "failed"
        assert done["error"]["code"] == "plan_review_expired"
        assert all(not s["attempts"] for s in done["steps"])
    assert _effects(upstream, label) == []
