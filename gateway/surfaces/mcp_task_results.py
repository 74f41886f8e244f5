"""What an MCP task reports: its state, and the tool result it ends with.

A held call's result is the outcome its one execution recorded on the approval
(`gateway.approvals.gate`): rebuilt here into the ``CallToolResult`` a client that
waited would have got, read as often as asked and never run again. A task that ended
without running (denied, expired, cancelled, refused when it ran) ends with a tool
result saying so, ``isError: true``, like a refused call's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.approvals.errors import ReplayedError
from gateway.executor.held_calls import HeldState
from gateway.surfaces.mcp_results import META_KEY, refused_tool_result, to_call_tool_result
from gateway.surfaces.mcp_task_store import TaskRow
from gateway.surfaces.mcp_views import View
from gateway.timestamps import format_epoch
from gateway.types import Outcome, OutcomeStatus, ToolResult

POLL_INTERVAL_MS = 2000

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]


@dataclass(frozen=True)
class TaskState:
    status: Status
    message: str
    # A completed task's tool result, as the client gets it (wire form).
    result: dict[str, Any] | None = None
    # Why a failed task did not run: ``code`` and ``message``.
    error: dict[str, Any] | None = None
    approval_id: str | None = None
    updated_at: str | None = None
    # An upstream task waiting for its client (``input_required``), at 2026-07-28: the
    # requests the gateway decided to relay, in MCP wire form, under the upstream's keys
    # (docs/decisions/0041).
    input_requests: dict[str, Any] | None = None


def answered_state(result: dict[str, Any] | None) -> TaskState:
    """A task-augmented call answered at once (2025-11-25): completed when it ran (its
    tool may still have failed), failed when the gateway refused it."""
    if result is None:  # erased on request (gateway.erasure_scope)
        message = "the call was answered; its result was erased on request"
        return TaskState("failed", message, error={"code": "outcome_erased", "message": message})
    decision = (result.get("_meta") or {}).get(META_KEY) or {}
    if decision.get("status") == "ok":
        return TaskState("completed", "the call ran; its result is ready", result=result)
    error = decision.get("error") or {}
    message = error.get("message") or "the call was not executed"
    return TaskState("failed", message, result=result, error=error)


def recorded_result(row: TaskRow, held: HeldState, view: View) -> dict[str, Any]:
    """The recorded outcome of the held call's one execution, as a tool result."""
    recorded = held.recorded or {}
    error = recorded.get("error")
    outcome = Outcome(
        row.request_id,
        row.tool,
        OutcomeStatus(recorded.get("status", "error")),
        None,
        result=ToolResult(**recorded["result"]) if recorded.get("result") else None,
        error=ReplayedError(
            error.get("code", "error"),
            error.get("message", ""),
            http_status=error.get("http_status", 502),
        )
        if error
        else None,
        approval_id=held.approval.id,
        # The request that executed it (this task's run, or a retry of the same call).
        replay_of=recorded.get("request_id"),
    )
    return to_call_tool_result(outcome, view)


def failed_result(row: TaskRow, state: TaskState, meta: dict[str, Any]) -> dict[str, Any]:
    """A task that ended without running the call, as the refused call's tool result."""
    text = f"The call to {row.tool} was not executed: {state.message}"
    return refused_tool_result(text, {META_KEY: meta})


def task_envelope(
    row: TaskRow, state: TaskState, modern: bool, *, wrap: bool = True
) -> dict[str, Any]:
    """The task as the era writes it: 2026 flat (``resultType: "task"`` when it answers
    a call), 2025 under ``task`` when it answers a call."""
    created = format_epoch(row.created_at)
    fields: dict[str, Any] = {
        "taskId": row.id,
        "status": state.status,
        "statusMessage": state.message,
        "createdAt": created,
        "lastUpdatedAt": state.updated_at or created,
    }
    if modern:
        task = {**fields, "ttlMs": row.ttl_ms, "pollIntervalMs": POLL_INTERVAL_MS}
        return {"resultType": "task", **task} if wrap else task
    task = {**fields, "ttl": row.ttl_ms, "pollInterval": POLL_INTERVAL_MS}
    return {"task": task} if wrap else task


def refusal_meta(row: TaskRow, state: TaskState, links: dict[str, Any]) -> dict[str, Any]:
    """The decision ``_meta`` of a task that ended without running the call."""
    code = (state.error or {}).get("code", state.status)
    return {
        "request_id": row.request_id,
        "status": "denied",
        "error": {"code": code, "message": state.message},
        **links,
    }
