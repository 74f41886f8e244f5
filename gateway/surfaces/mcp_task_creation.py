"""The gateway's own tasks, created (docs/mcp.md, "Tasks"; docs/decisions/0021): the
task of a call policy held for approval, and the task of a 2025-11-25 task-augmented
call answered at once, its result kept with the row.

A held call's task stands on the approval and on a one-step run the executor executes
once the approval is decided (`gateway.executor.held_calls`). Either kind is audited
``task.created`` before anything can execute it, and its row (`TaskStore.insert`) is
durable before the client is told its id. An upstream's own task is created by the
passthrough (`Passthrough.created`).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
import sqlalchemy as sa
from mcp.shared.exceptions import MCPError

from gateway.audit import AuditLog, AuditRecord
from gateway.errors import AuditUnavailable
from gateway.executor import held_calls, records
from gateway.executor.service import Executor
from gateway.operations import Operation
from gateway.surfaces.mcp_task_results import TaskState
from gateway.surfaces.mcp_task_states import TaskStates
from gateway.surfaces.mcp_task_store import TaskRow, TaskStore, new_task_id
from gateway.surfaces.mcp_views import View
from gateway.types import Outcome

log = logging.getLogger(__name__)


class TaskCreation:
    def __init__(
        self, executor: Executor, store: TaskStore, audit: AuditLog, states: TaskStates
    ) -> None:
        self.executor = executor
        self.store = store
        self.audit = audit
        self.states = states

    async def hold(
        self, operation: Operation, outcome: Outcome, view: View
    ) -> tuple[TaskRow, TaskState]:
        approvals = self.executor.deps.approvals
        assert outcome.approval_id is not None and outcome.decision is not None
        approval = await approvals.get_fresh(outcome.approval_id)
        run_id = records.new_run_id()
        ttl_s = held_calls.ttl_s(approval, outcome.decision, self.executor)
        task_id = new_task_id()
        try:
            # Before the run exists, like a run's submission: the log names the task
            # and its run before anything can execute it.
            await self._audit_created(
                operation, task_id, "held", approval_id=approval.id, run_id=run_id
            )
            await held_calls.hold_as_run(
                self.executor,
                operation,
                outcome.decision,
                approval,
                definition_hash=approval.definition_hash or "",
                task_id=task_id,
                run_id=run_id,
            )
            row = await self._insert(
                operation,
                view,
                task_id=task_id,
                kind="held",
                ttl_ms=int(ttl_s * 1000),
                approval_id=approval.id,
                run_id=run_id,
            )
        except AuditUnavailable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=exc.message) from None
        except sa.exc.SQLAlchemyError as exc:
            log.error("run of held call %s not stored: %s", operation.request_id, exc)
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"the run store is unavailable (request {operation.request_id}); "
                f"approval {approval.id} still holds the call: retry it once approved",
            ) from None
        state = await self.states.of(row)
        return row, state

    async def create(
        self, operation: Operation, view: View, *, kind: str, ttl_ms: int, result: dict[str, Any]
    ) -> TaskRow:
        task_id = new_task_id()
        try:
            await self._audit_created(operation, task_id, kind)
        except AuditUnavailable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=exc.message) from None
        return await self._insert(
            operation, view, task_id=task_id, kind=kind, ttl_ms=ttl_ms, result=result
        )

    async def _insert(self, operation: Operation, view: View, **values: Any) -> TaskRow:
        try:
            return await anyio.to_thread.run_sync(
                lambda: self.store.insert(
                    owner=operation.principal.identity,
                    request_id=operation.request_id,
                    tool=operation.target,
                    endpoint=view.upstream,
                    **values,
                )
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("task of %s not stored: %s", operation.request_id, exc)
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"the task store is unavailable (request {operation.request_id})",
            ) from None

    async def _audit_created(
        self,
        operation: Operation,
        task_id: str,
        kind: str,
        *,
        approval_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        payload = {
            "task_id": task_id,
            "kind": kind,
            "request_id": operation.request_id,
            "principal": operation.principal.to_audit(),
            "tool": operation.target,
            "approval_id": approval_id,
            "run_id": run_id,
        }
        record = AuditRecord(
            "task.created", task_id, payload, operation.principal.sub, operation.target
        )
        await self.audit.append(record)
