"""A tool call held for approval, executed by the executor once approved (the ground
of MCP tasks for held calls, docs/decisions/0021), on SQLite and PostgreSQL: the real
pipeline, approvals engine, run store and workers, and a real MCP upstream that
records every call it gets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import read_entries
from gateway.executor import records
from gateway.executor.errors import RunFinished
from gateway.executor.held_calls import cancel_held, held_state, hold_as_run
from gateway.logs import new_request_id
from gateway.operations import Operation
from gateway.types import OutcomeStatus
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


def _write(value: str) -> Operation:
    return Operation(
        principal=AGENT,
        method="tools/call",
        target="up__write",
        arguments={"key": "k", "value": value},
        transport="mcp",
        request_id=new_request_id(),
        hold_s=0,  # as a task-augmented call: answered at once
    )


async def _held(parts: Parts, call: Operation) -> tuple[str, str]:
    """The call, held; the run that executes it once approved. (approval id, run id)"""
    outcome = await parts.executor.deps.pipeline.call(call)
    assert outcome.status is OutcomeStatus.PENDING_APPROVAL, outcome
    assert outcome.approval_id is not None and outcome.decision is not None
    approval = await parts.approvals.get_fresh(outcome.approval_id)
    run_id = await hold_as_run(
        parts.executor,
        call,
        outcome.decision,
        approval,
        definition_hash=approval.definition_hash or "",
        task_id="tsk_" + uuid.uuid4().hex,
        run_id=records.new_run_id(),
    )
    return approval.id, run_id


def _writes(upstream: McpUpstreamServer, value: str) -> list[dict[str, Any]]:
    return [
        c for c in upstream.calls() if c["tool"] == "write" and c["arguments"]["value"] == value
    ]


async def _settled(parts: Parts, run_id: str, approval_id: str, status: str) -> Any:
    async def reached() -> Any:
        state = await held_state(parts.executor, run_id, approval_id)
        return state if state.status == status else None

    return await eventually_async(reached, f"held call {run_id} {status}")


async def test_a_held_call_runs_once_when_approved_and_its_result_is_read_again(
    parts: Parts, upstream: McpUpstreamServer
):
    value = "v-" + uuid.uuid4().hex
    call = _write(value)
    approval_id, run_id = await _held(parts, call)

    waiting = await held_state(parts.executor, run_id, approval_id)
    assert waiting.status == "working"
    assert approval_id in waiting.message and "role:approver" in waiting.message
    run = await parts.executor.get(run_id, None)
    assert run["status"] == "waiting"  # released: no lease, nothing decided or called
    assert _writes(upstream, value) == []

    await parts.approvals.decide(approval_id, APPROVER, approve=True, reason="ok", channel="rest")
    done = await _settled(parts, run_id, approval_id, "completed")
    assert done.recorded["status"] == "ok"
    assert done.recorded["result"]["content"][0]["text"] == "wrote k"
    assert len(_writes(upstream, value)) == 1

    # Reading it again (a repeated tasks/result) reads the record: nothing runs.
    again = await held_state(parts.executor, run_id, approval_id)
    assert again.recorded == done.recorded
    # The agent retrying the same call without a task gets the same recorded outcome.
    retry = await parts.executor.deps.pipeline.call(_write(value))
    assert retry.status is OutcomeStatus.OK and retry.replay_of == done.recorded["request_id"]
    assert len(_writes(upstream, value)) == 1

    view = await parts.wait(run_id)
    assert view["status"] == "succeeded", view
    assert view["provenance"]["held_call"]["approval_id"] == approval_id
    # Every step audited: the held attempt and decision, the approval, and the
    # execution as the caller through the executor, with its outcome.
    executed = [
        e.payload
        for e in read_entries(parts.database, kind="call.outcome")
        if e.payload and e.payload.get("approval_id") == approval_id
    ]
    assert [e["status"] for e in executed].count("ok") == 1
    kinds = {e.kind for e in read_entries(parts.database) if e.ref == approval_id}
    assert {"approval.request", "approval.decision"} <= kinds


async def test_a_denied_held_call_fails_without_running(parts: Parts, upstream):
    value = "v-" + uuid.uuid4().hex
    approval_id, run_id = await _held(parts, _write(value))
    await parts.approvals.decide(
        approval_id, APPROVER, approve=False, reason="not today", channel="rest"
    )
    failed = await _settled(parts, run_id, approval_id, "failed")
    assert failed.error["code"] == "approval_denied"
    assert "not today" in failed.message
    view = await parts.wait(run_id)
    assert view["status"] == "failed"
    assert _writes(upstream, value) == []


async def test_a_cancelled_held_call_never_runs_even_if_approved_later(parts: Parts, upstream):
    value = "v-" + uuid.uuid4().hex
    approval_id, run_id = await _held(parts, _write(value))
    assert await cancel_held(parts.executor, run_id, AGENT) == "cancelled"
    state = await held_state(parts.executor, run_id, approval_id)
    assert state.status == "cancelled"
    with pytest.raises(RunFinished):
        await cancel_held(parts.executor, run_id, AGENT)
    await parts.approvals.decide(approval_id, APPROVER, approve=True, reason=None, channel="rest")
    assert (await held_state(parts.executor, run_id, approval_id)).status == "cancelled"
    assert _writes(upstream, value) == []


async def test_held_arguments_are_never_read_as_templates(parts: Parts, upstream):
    # A value that looks like a plan template reaches the upstream as it was sent.
    value = "${{ inputs.arguments.key }}-" + uuid.uuid4().hex
    approval_id, run_id = await _held(parts, _write(value))
    run = await parts.executor.get(run_id, None)
    assert run["plan"]["steps"][0]["arguments"] == {
        "key": '${{ inputs.arguments."key" }}',
        "value": '${{ inputs.arguments."value" }}',
    }
    await parts.approvals.decide(approval_id, APPROVER, approve=True, reason=None, channel="rest")
    await _settled(parts, run_id, approval_id, "completed")
    assert len(_writes(upstream, value)) == 1


async def test_two_tasks_of_one_held_call_share_its_one_execution(parts: Parts, upstream):
    # The same call twice (same principal, tool, arguments): one approval, two runs
    # that two workers may take at once; the approval's claim lets one execute.
    value = "v-" + uuid.uuid4().hex
    first_approval, first_run = await _held(parts, _write(value))
    second_approval, second_run = await _held(parts, _write(value))
    assert first_approval == second_approval
    await parts.approvals.decide(
        first_approval, APPROVER, approve=True, reason=None, channel="rest"
    )
    one = await _settled(parts, first_run, first_approval, "completed")
    two = await _settled(parts, second_run, second_approval, "completed")
    assert one.recorded == two.recorded
    for run_id in (first_run, second_run):
        assert (await parts.wait(run_id))["status"] == "succeeded"
    assert len(_writes(upstream, value)) == 1


async def test_an_expired_held_call_fails_without_running(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
):
    grants = [
        {
            "role": "agent",
            "tool": "up__write",
            "approval": {"approvers": ["role:approver"], "ttl_s": 1},
        }
    ]
    async with executor_parts(database_url, tmp_path, upstream.url, grants=grants) as parts:
        value = "v-" + uuid.uuid4().hex
        approval_id, run_id = await _held(parts, _write(value))
        failed = await _settled(parts, run_id, approval_id, "failed")
        assert failed.error["code"] == "approval_expired"
        assert (await parts.wait(run_id))["status"] == "failed"
        assert _writes(upstream, value) == []
