"""Runs end to end in one process, on SQLite and PostgreSQL: every step through the
real pipeline to a real MCP upstream, with the shipped Rego policy."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.audit import AuditRecord, read_entries
from gateway.errors import GatewayError
from gateway.executor import PlanInvalid, PlanRefused
from gateway.executor.errors import IdempotencyConflict
from gateway.executor.worker import Worker
from tests.integration.executor.harness import AGENT, APPROVER, Parts, executor_parts
from tests.support.processes import McpUpstreamServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


@pytest.fixture
async def parts(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> AsyncIterator[Parts]:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=2) as parts:
        yield parts


def _step(view: dict, step_id: str) -> dict:
    return next(s for s in view["steps"] if s["id"] == step_id)


async def test_sequential_steps_pass_outputs_on(parts: Parts, upstream: McpUpstreamServer):
    plan = {
        "name": "sequential",
        "inputs": {"type": "object", "properties": {"who": {"type": "string"}}},
        "steps": [
            {"id": "first", "tool": "up__effect", "arguments": {"label": "${{ inputs.who }}"}},
            {
                "id": "second",
                "tool": "up__echo",
                "needs": ["first"],
                "arguments": {"text": "after ${{ steps.first.output.label }}"},
            },
        ],
    }
    run_id = await parts.submit(plan, {"who": "alice"})
    view = await parts.wait(run_id)
    assert view["status"] == "succeeded", view
    assert _step(view, "first")["output"]["label"] == "alice"
    assert _step(view, "second")["output"] == {"result": "after alice"}
    effect_calls = [c for c in upstream.calls() if c["tool"] == "effect"]
    assert effect_calls[-1]["meta"]["io.agentgateway/idempotency-key"] == f"{run_id}:first"
    # Provenance: what ran, under whose authority.
    assert view["provenance"]["plan_hash"].startswith("sha256:")
    assert set(view["provenance"]["tools"]) == {"up__effect", "up__echo"}
    assert view["provenance"]["policy_revision"]
    kinds = await _kinds(parts, run_id, "run.completed")
    assert kinds[0] == "run.submitted"
    assert {"run.started", "step.started", "step.completed", "run.completed"} <= set(kinds)
    # Each call the steps made is in the log with the run and step ids.
    attempts = [
        e
        for e in read_entries(parts.database, kind="call.attempt")
        if e.payload and e.payload["run_id"] == run_id
    ]
    assert {a.payload["step_id"] for a in attempts} == {"first", "second"}
    assert all(a.payload["transport"] == "executor" for a in attempts)
    assert all(
        a.payload["principal"]["act_chain"][0]["sub"] == "gateway:executor" for a in attempts
    )


async def test_routing_skips_the_branch_not_taken(parts: Parts):
    plan = {
        "steps": [
            {"id": "check", "tool": "up__echo", "arguments": {"text": "urgent"}},
            {
                "id": "urgent",
                "tool": "up__echo",
                "needs": ["check"],
                "when": "steps.check.output.result == 'urgent'",
                "arguments": {"text": "page"},
            },
            {
                "id": "normal",
                "tool": "up__echo",
                "needs": ["check"],
                "when": "steps.check.output.result != 'urgent'",
                "arguments": {"text": "queue"},
            },
            {
                "id": "after_normal",
                "tool": "up__echo",
                "needs": ["normal"],
                "arguments": {"text": "x"},
            },
            {
                "id": "join",
                "tool": "up__echo",
                "needs": ["urgent", "normal"],
                "when": "`true`",
                "arguments": {"text": "${{ steps.urgent.output.result }}"},
            },
        ]
    }
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "succeeded", view
    statuses = {s["id"]: s["status"] for s in view["steps"]}
    assert statuses == {
        "check": "succeeded",
        "urgent": "succeeded",
        "normal": "skipped",
        "after_normal": "skipped",
        "join": "succeeded",
    }
    assert _step(view, "join")["output"] == {"result": "page"}


async def test_independent_branches_run_concurrently(parts: Parts):
    # Each branch's call is answered only once all four have reached the upstream: the
    # run can only succeed if all four were running at the same time.
    group = uuid.uuid4().hex
    meet = {"tool": "up__rendezvous", "arguments": {"group": group, "count": 4}}
    plan = {"steps": [{"id": f"b{i}", **meet} for i in range(4)]}
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "succeeded", view
    starts = sorted(s["started_at"] for s in view["steps"])
    finishes = sorted(s["finished_at"] for s in view["steps"])
    assert starts[-1] < finishes[0]


async def test_retries_with_backoff_then_succeeds(parts: Parts):
    plan = {
        "steps": [
            {
                "id": "f",
                "tool": "up__flaky",
                "arguments": {"fail_times": 2},
                "retry": {"max_attempts": 3, "backoff_s": 0.1},
            }
        ]
    }
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "succeeded", view
    attempts = _step(view, "f")["attempts"]
    assert [a["status"] for a in attempts] == ["tool_error", "tool_error", "ok"]
    assert _step(view, "f")["output"] == {"attempts": 3}


async def test_a_failed_step_fails_the_run_and_compensates(
    parts: Parts, upstream: McpUpstreamServer
):
    plan = {
        "steps": [
            {
                "id": "reserve",
                "tool": "up__effect",
                "arguments": {"label": "reserve"},
                "compensate": {
                    "tool": "up__effect",
                    "arguments": {"label": "undo ${{ steps.reserve.output.label }}"},
                },
            },
            {"id": "plain", "tool": "up__echo", "arguments": {"text": "no compensation"}},
            {
                "id": "failing",
                "tool": "up__flaky",
                "needs": ["reserve", "plain"],
                "arguments": {"fail_times": 5},
                "retry": {"max_attempts": 1},
            },
        ]
    }
    run_id = await parts.submit(plan)
    view = await parts.wait(run_id)
    assert view["status"] == "failed"
    assert view["error"]["step"] == "failing"
    assert _step(view, "reserve")["compensation"] == "succeeded"
    assert _step(view, "plain")["compensation"] is None
    undo = [c for c in upstream.calls() if c["arguments"].get("label") == "undo reserve"]
    assert undo[-1]["meta"]["io.agentgateway/idempotency-key"] == f"{run_id}:reserve:compensate"
    kinds = await _kinds(parts, run_id, "run.failed")
    assert "step.compensated" in kinds and kinds[-1] == "run.failed"


async def test_a_step_denied_by_policy_at_run_time(parts: Parts, upstream: McpUpstreamServer):
    # The plan is allowed (plan/submit sees no arguments); the step's own tools/call
    # decision sees the rendered argument, too long for the grant's constraint.
    plan = {
        "steps": [
            {"id": "short", "tool": "up__echo", "arguments": {"text": "ok"}},
            {
                "id": "long",
                "tool": "up__echo",
                "needs": ["short"],
                "retry": {"max_attempts": 3},
                "arguments": {"text": "${{ inputs.text }}"},
            },
        ]
    }
    before = len(upstream.calls())
    run_id = await parts.submit(plan, {"text": "x" * 100})
    view = await parts.wait(run_id)
    assert view["status"] == "failed"
    long = _step(view, "long")
    assert long["status"] == "failed" and long["error"]["code"] == "denied"
    assert [a["status"] for a in long["attempts"]] == ["denied"]  # a denial is not retried
    assert long["decision"]["rule"] == "argument_constraint"
    assert len(upstream.calls()) == before + 1  # only "short" reached the upstream
    # A plan naming a tool without a grant is refused as a whole, before any run.
    with pytest.raises(PlanRefused) as refused:
        await parts.submit({"steps": [{"id": "w", "tool": "up__whoami"}]})
    assert "up__whoami" in refused.value.message
    refusals = read_entries(parts.database, kind="run.refused")
    assert refusals and refusals[-1].payload["decision"]["allow"] is False


async def test_invalid_plans_are_rejected_with_every_problem(parts: Parts):
    with pytest.raises(PlanInvalid) as invalid:
        await parts.submit(
            {
                "steps": [
                    {"id": "a", "tool": "up__nope", "needs": ["c"]},
                    {"id": "b", "tool": "up__echo", "arguments": {"text": 5}},
                    {
                        "id": "c",
                        "tool": "up__echo",
                        "needs": ["a"],
                        "arguments": {"text": "${{ steps.b.output.result }}"},
                    },
                ]
            }
        )
    messages = [(p["step"], p["field"]) for p in invalid.value.problems]
    assert ("a", "tool") in messages  # unknown tool
    assert ("b", "arguments") in messages  # literal argument fails the schema
    assert ("a", "needs") in messages  # cycle a -> c -> a
    assert ("c", "arguments.text") in messages  # b is not among c's needs


async def test_submitting_twice_with_one_key_creates_one_run(parts: Parts):
    plan = {"steps": [{"id": "e", "tool": "up__echo", "arguments": {"text": "once"}}]}
    first = await parts.submit(plan, idempotency_key="k-1")
    second = await parts.submit(plan, idempotency_key="k-1")
    assert first == second
    with pytest.raises(IdempotencyConflict):
        await parts.submit(
            {"steps": [{"id": "e", "tool": "up__echo", "arguments": {"text": "other"}}]},
            idempotency_key="k-1",
        )
    await parts.wait(first)


async def test_cancel_stops_a_sleeping_run(parts: Parts):
    plan = {
        "steps": [
            {"id": "nap", "sleep_s": 30},
            {"id": "after", "tool": "up__echo", "needs": ["nap"], "arguments": {"text": "late"}},
        ]
    }
    run_id = await parts.submit(plan)
    await parts.view_once(run_id, "waiting")
    assert await parts.executor.cancel(run_id, None) == "cancelled"
    view = await parts.wait(run_id)
    assert view["status"] == "cancelled"
    assert {s["status"] for s in view["steps"]} == {"cancelled"}


async def test_sleep_is_a_durable_timer(parts: Parts):
    plan = {
        "steps": [
            {"id": "nap", "sleep_s": 0.4},
            {"id": "after", "tool": "up__echo", "needs": ["nap"], "arguments": {"text": "woke"}},
        ]
    }
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "succeeded", view
    nap, after = _step(view, "nap"), _step(view, "after")
    assert nap["finished_at"] <= after["started_at"]


async def test_quota_of_tool_calls_is_enforced_by_the_engine(parts: Parts):
    plan = {
        "max_tool_calls": 2,
        "steps": [
            {
                "id": "f",
                "tool": "up__flaky",
                "arguments": {"fail_times": 5},
                "retry": {"max_attempts": 5, "backoff_s": 0.01},
            },
        ],
    }
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "failed"
    assert view["error"]["code"] == "quota_exceeded"
    assert view["tool_calls"] == 3  # the third was refused before it was made


async def test_step_timeout_and_run_deadline(parts: Parts):
    plan = {
        "steps": [
            {
                "id": "slow",
                "tool": "up__slow",
                "arguments": {"seconds": 5.0},  # long past the step's timeout, however busy
                "timeout_s": 0.3,
                "retry": {"max_attempts": 1},
            },
        ],
    }
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "failed"
    assert _step(view, "slow")["error"]["code"] == "step_timeout"
    plan = {"deadline_s": 0.5, "steps": [{"id": "nap", "sleep_s": 5}]}
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "failed" and view["error"]["code"] == "deadline_exceeded"
    assert json.dumps(view)  # the view is plain JSON


async def _waiting_approval(parts: Parts, run_id: str, step_id: str) -> str:
    """The approval a step waits for, once the run is released (status waiting)."""

    async def waiting() -> str | None:
        view = await parts.executor.get(run_id, None)
        step = _step(view, step_id)
        if step["approval_id"] and step["status"] == "waiting" and view["status"] == "waiting":
            return str(step["approval_id"])
        return None

    return await eventually_async(waiting, f"step {step_id} waiting for an approval")


async def _kinds(parts: Parts, run_id: str, last: str) -> list[str]:
    """The run's audit kinds once ``last`` is in the log (events are queued, not awaited)."""

    def kinds() -> list[str] | None:
        found = [e.kind for e in read_entries(parts.database, ref=run_id)]
        return found if last in found else None

    return await eventually_async(kinds, f"{last} in the audit log")


async def test_an_approval_gate_waits_durably_and_continues_when_approved(parts: Parts):
    plan = {
        "steps": [
            {
                "id": "gate",
                "approval": {
                    "approvers": ["role:approver"],
                    "timeout_s": 30,
                    "message": "ship it?",
                },
            },
            {
                "id": "ship",
                "tool": "up__echo",
                "needs": ["gate"],
                "arguments": {"text": "by ${{ steps.gate.output.approved_by }}"},
            },
        ]
    }
    run_id = await parts.submit(plan)
    approval_id = await _waiting_approval(parts, run_id, "gate")
    view = await parts.executor.get(run_id, None)
    assert view["status"] == "waiting"  # released: no lease held while it waits
    with pytest.raises(GatewayError):  # the submitter may not approve its own gate
        await parts.approvals.decide(approval_id, AGENT, approve=True, reason=None, channel="rest")
    await parts.approvals.decide(approval_id, APPROVER, approve=True, reason="ok", channel="rest")
    view = await parts.wait(run_id)
    assert view["status"] == "succeeded", view
    assert _step(view, "ship")["output"] == {"result": "by user:approver"}


async def test_an_approval_gate_that_times_out_fails_the_run(parts: Parts):
    plan = {
        "steps": [
            {"id": "gate", "approval": {"timeout_s": 0.5}},
            {"id": "never", "tool": "up__echo", "needs": ["gate"], "arguments": {"text": "x"}},
        ]
    }
    view = await parts.wait(await parts.submit(plan))
    assert view["status"] == "failed"
    assert _step(view, "gate")["error"]["code"] == "approval_timeout"
    assert _step(view, "never")["status"] == "cancelled"


async def test_a_step_needing_approval_runs_once_approved(parts: Parts, upstream):
    plan = {"steps": [{"id": "w", "tool": "up__write", "arguments": {"key": "k", "value": "v"}}]}
    run_id = await parts.submit(plan)
    approval_id = await _waiting_approval(parts, run_id, "w")
    assert not [
        c
        for c in upstream.calls()
        if c["tool"] == "write"
        and c["meta"].get("io.agentgateway/idempotency-key") == f"{run_id}:w"
    ]
    await parts.approvals.decide(approval_id, APPROVER, approve=True, reason=None, channel="rest")
    view = await parts.wait(run_id)
    assert view["status"] == "succeeded", view
    writes = [
        c
        for c in upstream.calls()
        if c["tool"] == "write"
        and c["meta"].get("io.agentgateway/idempotency-key") == f"{run_id}:w"
    ]
    assert len(writes) == 1


async def _entries_so_far(parts: Parts) -> int:
    """How many entries the log has once everything queued so far is written. Run
    events are queued, not awaited; the queue is the chain's order, so once a marker
    appended now is written, so is everything queued before it."""
    await parts.audit.append(AuditRecord("test.marker", "marker", {}))
    return len(read_entries(parts.database))


async def test_a_run_waiting_for_approval_holds_nothing_and_writes_nothing(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
):
    # No worker loops: this test claims for itself, so "a minute of polling" is a count
    # of claims, not a wait.
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        worker = Worker(parts.executor.deps, "w-test")
        plan = {
            "steps": [
                {"id": "gate", "approval": {"approvers": ["role:approver"], "timeout_s": 3600}},
                {"id": "after", "tool": "up__echo", "needs": ["gate"], "arguments": {"text": "x"}},
            ]
        }
        run_id = await parts.submit(plan)
        assert await worker.run_once()  # claims, asks for the approval, releases
        waiting = parts.store.run_row(run_id)
        assert waiting.status == "waiting" and waiting.lease_owner is None
        now = parts.store.clock()
        # Claimable again at the gate's timeout, not after a poll interval.
        assert waiting.wake_at - now > 3000
        before = await _entries_so_far(parts)
        for _ in range(60):  # every poll of every worker for as long as it likes
            assert not await worker.run_once()
        assert await _entries_so_far(parts) == before + 1  # only the second marker
        assert parts.store.run_row(run_id).fencing_token == waiting.fencing_token

        approval_id = _step(await parts.executor.get(run_id, None), "gate")["approval_id"]
        await parts.approvals.decide(
            approval_id, APPROVER, approve=True, reason=None, channel="rest"
        )
        assert await worker.run_once()  # the decision itself wakes the run
        view = await parts.executor.get(run_id, None)
        assert view["status"] == "succeeded", view
        await _entries_so_far(parts)
        kinds = [e.kind for e in read_entries(parts.database, start=before)]
        assert kinds.count("run.resumed") == 1
        assert "approval.decision" in kinds
