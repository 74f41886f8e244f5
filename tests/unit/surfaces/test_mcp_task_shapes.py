"""The wire shapes of MCP tasks in both eras, and what a request must say to get one
(gateway/surfaces/mcp_tasks.py, mcp_task_results.py; docs/mcp.md, "Tasks")."""

from __future__ import annotations

from gateway.executor.expressions import render
from gateway.executor.held_calls import held_plan
from gateway.surfaces.mcp_results import META_KEY
from gateway.surfaces.mcp_task_results import (
    TaskState,
    answered_state,
    refusal_meta,
    task_envelope,
)
from gateway.surfaces.mcp_task_store import TaskRow, new_task_id
from gateway.surfaces.mcp_tasks import TASKS_EXTENSION, declares_tasks

ROW = TaskRow(
    id="tsk_1",
    kind="held",
    owner="https://issuer.test\nagent:a",
    request_id="req_1",
    tool="up__write",
    endpoint=None,
    approval_id="apr_1",
    run_id="run_1",
    result=None,
    created_at=1_780_000_000.0,
    ttl_ms=60_000,
    expires_at=1_780_000_060.0,
)
WORKING = TaskState("working", "waiting for approval apr_1")


def test_only_a_request_declaring_the_extension_asks_for_tasks() -> None:
    capabilities = "io.modelcontextprotocol/clientCapabilities"
    assert declares_tasks({capabilities: {"extensions": {TASKS_EXTENSION: {}}}})
    assert not declares_tasks({capabilities: {"extensions": {}}})
    assert not declares_tasks({capabilities: {}})
    assert not declares_tasks({capabilities: "tasks"})  # hostile shapes: no
    assert not declares_tasks(None)
    assert not declares_tasks([TASKS_EXTENSION])


def test_2026_tasks_are_flat_with_units_in_the_names() -> None:
    created = task_envelope(ROW, WORKING, True)
    assert created["resultType"] == "task"
    assert created["taskId"] == "tsk_1" and created["status"] == "working"
    assert created["ttlMs"] == 60_000 and created["pollIntervalMs"] > 0
    assert "ttl" not in created and "pollInterval" not in created and "task" not in created
    assert "resultType" not in task_envelope(ROW, WORKING, True, wrap=False)


def test_2025_tasks_are_wrapped_in_a_task_object() -> None:
    created = task_envelope(ROW, WORKING, False)
    assert set(created) == {"task"}
    assert created["task"]["ttl"] == 60_000 and "pollInterval" in created["task"]
    assert created["task"]["createdAt"].endswith("Z")
    assert task_envelope(ROW, WORKING, False, wrap=False) == created["task"]


def test_a_refusal_names_the_approval_and_its_code() -> None:
    failed = TaskState("failed", "denied", error={"code": "approval_denied", "message": "x"})
    meta = refusal_meta(ROW, failed, {"approval_id": "apr_1"})
    assert meta["error"] == {"code": "approval_denied", "message": "denied"}
    assert meta["approval_id"] == "apr_1" and meta["request_id"] == "req_1"


def test_task_ids_are_unguessable() -> None:
    ids = {new_task_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == len("tsk_") + 32 for i in ids)


def test_a_held_plan_refers_to_its_arguments_and_never_evaluates_them() -> None:
    arguments = {"text": "${{ inputs }}", "odd key": 1, 'q"uote': [1, 2], "}}": "x"}
    plan = held_plan("up__echo", arguments)
    [step] = plan.steps
    rendered = render(step.arguments, {"inputs": {"arguments": arguments}})
    assert rendered == arguments


def test_a_call_answered_at_once_completes_when_it_ran_and_fails_when_refused() -> None:
    ran = {"content": [], "isError": True, "_meta": {META_KEY: {"status": "ok"}}}
    assert answered_state(ran).status == "completed"  # the tool failed; the call ran
    refused = {
        "content": [],
        "isError": True,
        "_meta": {META_KEY: {"status": "denied", "error": {"code": "denied", "message": "no"}}},
    }
    state = answered_state(refused)
    assert state.status == "failed" and state.message == "no" and state.result == refused
