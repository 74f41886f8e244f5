"""Upstreams' own tasks, passed through to the MCP client that asked for a task
(docs/decisions/0030; docs/mcp.md, "Tasks").

A task-augmented ``tools/call`` (2025-11-25 ``params.task``; 2026-07-28 a request
declaring the tasks extension) of a tool whose upstream runs tools as tasks
(`gateway.upstreams.mcp_upstream_tasks`) goes through the one pipeline like any call —
policy decides it, attempt and decision are durable before the upstream sees it —
and is forwarded as a task-augmented call. When the upstream answers with a task, the
gateway gives the client a task of its own, a row of kind ``upstream`` in
``mcp_tasks`` naming the upstream's task id and bound to the caller's identity like
every task (`mcp_tasks` refuses anyone else, -32602, audited ``task.refused``).
Its ``tasks/*`` are forwarded to the tool's upstream with the upstream's own
credentials for the caller; the client's era and the upstream's need not match (the
state is normalized, then written in the client's era).

The call's ``call.outcome`` is written when its result is first fetched (2025-11-25
``tasks/result``, 2026-07-28 a ``tasks/get`` of an ended task), by whichever request
wins the row's compare-and-swap (`TaskStore.claim_outcome`): exactly once.

A task waiting for its client's input shows ``input_required``; what it waits for is
relayed to its owner under policy (`mcp_task_input`, docs/decisions/0041): asked on a
2025-11-25 owner's ``tasks/result`` stream, shown to a 2026-07-28 owner in
``inputRequests`` and answered with its ``tasks/update`` — a 2025-11-25 upstream's
collected for it on a ``tasks/result`` the gateway holds (`mcp_task_streams`, 0044).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from gateway.audit import AuditLog, AuditRecord
from gateway.errors import (
    AuditUnavailable,
    ClientInputRefused,
    GatewayError,
    UpstreamError,
    UpstreamRejected,
)
from gateway.operations import ClientInput, Operation
from gateway.pipeline import Pipeline
from gateway.surfaces.mcp_results import to_call_tool_result
from gateway.surfaces.mcp_task_input import PolledChannel, TaskInput
from gateway.surfaces.mcp_task_results import Status, TaskState
from gateway.surfaces.mcp_task_store import (
    DEFAULT_TTL_MS,
    MAX_TTL_MS,
    TaskRow,
    TaskStore,
    new_task_id,
)
from gateway.surfaces.mcp_task_streams import SHOW_WAIT_S, NoRoom, TaskStreams
from gateway.surfaces.mcp_views import View
from gateway.types import Outcome, OutcomeStatus, Principal, UpstreamTask
from gateway.upstreams import mcp_client_input
from gateway.upstreams.mcp_upstream_tasks import TaskView, UpstreamTasks
from gateway.upstreams.targets import CatalogEntry

log = logging.getLogger(__name__)

# How long a task request waits for its upstream (a tasks/* request is quick).
TIMEOUT_S = 30.0


class Passthrough:
    def __init__(self, pipeline: Pipeline, store: TaskStore, audit: AuditLog) -> None:
        self.pipeline = pipeline
        self.store = store
        self.audit = audit
        # How what an upstream task waits for reaches its owner (set where the MCP
        # server is built, which holds the relay; None: nothing is relayed).
        self.input: TaskInput | None = None
        # What a 2025-11-25 upstream's task waits for, collected for a 2026-07-28 owner
        # on a background tasks/result (set with ``input``; docs/decisions/0044).
        self.streams: TaskStreams | None = None

    def accepts(self, tool: str) -> bool:
        """Whether a task-augmented call of the gateway tool ``tool`` is passed through
        (its upstream runs it as a task); else the gateway answers it (`mcp_tasks`)."""
        entry = self._entry(tool)
        return entry is not None and _tasks(entry).serves(entry.definition.upstream_tool)

    async def created(
        self, operation: Operation, task: UpstreamTask, view: View, ttl_ms: int | None
    ) -> tuple[TaskRow, TaskState]:
        """The gateway's task for the upstream's, durable (and audited) before the
        client hears its id."""
        task_id = new_task_id()
        ttl = min(task.ttl_ms or ttl_ms or DEFAULT_TTL_MS, MAX_TTL_MS)
        payload = {
            "task_id": task_id,
            "kind": "upstream",
            "request_id": operation.request_id,
            "principal": operation.principal.to_audit(),
            "tool": operation.target,
            "upstream": task.upstream,
            "upstream_task_id": task.task_id,
        }
        record = AuditRecord(
            "task.created", task_id, payload, operation.principal.sub, operation.target
        )
        try:
            await self.audit.append(record)
            row = await anyio.to_thread.run_sync(
                lambda: self.store.insert(
                    task_id=task_id,
                    kind="upstream",
                    owner=operation.principal.identity,
                    request_id=operation.request_id,
                    tool=operation.target,
                    endpoint=view.upstream,
                    ttl_ms=ttl,
                    upstream_task_id=task.task_id,
                )
            )
        except AuditUnavailable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=exc.message) from None
        except Exception as exc:  # the store: the upstream's task runs on, unreachable
            log.error("task of %s not stored: %s", operation.request_id, exc)
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"the task store is unavailable (request {operation.request_id}); "
                f"upstream {task.upstream} runs the call as its task {task.task_id}",
            ) from None
        return row, TaskState(_status(task.status), task.message or f"{task.upstream} works on it")

    async def state(
        self,
        row: TaskRow,
        principal: Principal,
        *,
        with_result: bool,
        client_input: ClientInput | None = None,
        polled: PolledChannel | None = None,
    ) -> TaskState:
        """The upstream task's state; with its result once it ended if ``with_result``
        (then the call's outcome is recorded, once). What a task waiting for input
        waits for is relayed to its owner (docs/decisions/0041): ``client_input`` for a
        2025-11-25 owner's ``tasks/result`` (asked on its stream), ``polled`` for a
        2026-07-28 owner's ``tasks/get`` (shown in ``inputRequests``)."""
        entry = self._entry(row.tool)
        if entry is None:
            message = f"{row.tool} is no longer offered (its definition changed or was removed)"
            return TaskState("failed", message, error={"code": "unknown_tool", "message": message})
        assert row.upstream_task_id is not None
        tasks = _tasks(entry)
        headers = entry.credentials.headers_for(principal)
        call = _call_of(row, principal)
        try:
            view = await self._view(row, tasks, headers, with_result, client_input)
            if view.input_requests is not None and polled is not None and self.input is not None:
                wire = await self.input.offer(row.id, call, tasks.name, view.input_requests, polled)
                message = view.message or "waiting for input"
                return TaskState("input_required", message, input_requests=wire)
            if polled is not None and view.input_requests is None and not view.ended:
                held = await self._held(row, call, tasks, headers, view, polled, with_result)
                if isinstance(held, TaskState):
                    return held
                view = held or view
        except ClientInputRefused as refused:
            return await self._refused(row, principal, entry, refused)
        except UpstreamRejected as exc:  # e.g. the upstream forgot it (its TTL): it ended
            return await self._ended(row, principal, TaskView("failed", exc.message), entry, exc)
        except UpstreamError as exc:
            raise _unavailable(row, exc) from None
        refusal = self.input.refusal(row.id) if self.input is not None else None
        if refusal is not None and view.status == "cancelled":  # cancelled by the gateway
            error = {"code": "client_input_refused", "message": refusal}
            view = TaskView("failed", refusal, error=error)
        if not with_result or not view.ended:
            return TaskState(_status(view.status), view.message or view.status)
        return await self._ended(row, principal, view, entry, None)

    async def _view(
        self,
        row: TaskRow,
        tasks: UpstreamTasks,
        headers: dict[str, str],
        with_result: bool,
        client_input: ClientInput | None,
    ) -> TaskView:
        """The upstream task's state, what it waits for asked of a 2025-11-25 owner's
        ``tasks/result`` (``client_input``) until it waits no more."""
        assert row.upstream_task_id is not None
        view = await tasks.get(
            row.upstream_task_id,
            headers=headers,
            timeout_s=TIMEOUT_S,
            with_result=with_result,
            client_input=client_input,
        )
        for _ in range(mcp_client_input.MAX_INPUT_ROUNDS):
            if view.input_requests is None or client_input is None or self.input is None:
                break
            answers = await self.input.ask_now(
                row.id, tasks.name, view.input_requests, client_input
            )
            await tasks.update(row.upstream_task_id, answers, headers=headers, timeout_s=TIMEOUT_S)
            view = await tasks.get(
                row.upstream_task_id,
                headers=headers,
                timeout_s=TIMEOUT_S,
                with_result=with_result,
            )
        return view

    async def _held(
        self,
        row: TaskRow,
        call: Operation,
        tasks: UpstreamTasks,
        headers: dict[str, str],
        view: TaskView,
        polled: PolledChannel,
        with_result: bool,
    ) -> TaskState | TaskView | None:
        """A 2025-11-25 upstream's task, for a 2026-07-28 owner: what it waits for,
        collected on a ``tasks/result`` the gateway holds (started here when the task
        waits), shown in ``inputRequests``. A `TaskView`: that stream ended meanwhile
        (the task moved on), and this is the task read again. None: nothing to show."""
        if self.streams is None or not tasks.asks_on_result_stream():
            return None
        waiting = view.status == "input_required"
        upstream_task_id = row.upstream_task_id
        assert upstream_task_id is not None

        async def fetch(client_input: ClientInput) -> TaskView:
            # Held until the task ends (or the stream is stopped), at most its TTL.
            return await tasks.get(
                upstream_task_id,
                headers=headers,
                timeout_s=row.ttl_ms / 1000,
                with_result=False,
                client_input=client_input,
            )

        if waiting:
            try:
                self.streams.start(row.id, call, polled, fetch, upstream=tasks.name)
            except NoRoom as full:
                message = f"{view.message or 'waiting for input'} ({full}: poll again)"
                return TaskState("working", message)
        shown = await self.streams.shown(row.id, within=SHOW_WAIT_S if waiting else 0)
        if shown:
            message = view.message or "waiting for input"
            return TaskState("input_required", message, input_requests=shown)
        if not waiting:
            return None
        if not self._holds(row):
            return await self._view(row, tasks, headers, with_result, None)
        message = (
            f"{view.message or 'waiting for input'} (the gateway waits for the upstream's "
            "requests: poll again)"
        )
        return TaskState("working", message)

    def _holds(self, row: TaskRow) -> bool:
        return self.streams is not None and self.streams.holds(row.id)

    async def update(self, row: TaskRow, principal: Principal, responses: dict[str, Any]) -> None:
        """A 2026-07-28 owner's answers (``tasks/update``) to what its task's upstream
        asked, recorded and passed on: to a 2025-11-25 upstream as the responses on the
        ``tasks/result`` the gateway holds, to a 2026-07-28 one with its own
        ``tasks/update``. Raises `ClientInputRefused` when nothing waits for them here."""
        if self.streams is not None and self._holds(row):
            self.streams.answer(row.id, responses)  # recorded by the relay, as answered
            return
        entry = self._entry(row.tool)
        if entry is None or row.upstream_task_id is None or self.input is None:
            raise ClientInputRefused(
                f"task {row.id} waits for no input", rpc_code=types.INVALID_PARAMS
            )
        answers = self.input.answers(row.id, _call_of(row, principal), responses)
        headers = entry.credentials.headers_for(principal)
        try:
            await _tasks(entry).update(
                row.upstream_task_id, answers, headers=headers, timeout_s=TIMEOUT_S
            )
        except UpstreamError as exc:
            raise _unavailable(row, exc) from None

    async def _refused(
        self, row: TaskRow, principal: Principal, entry: CatalogEntry, refused: ClientInputRefused
    ) -> TaskState:
        """A 2026-07-28 upstream's request refused: it has no error answer to receive
        (``tasks/update`` carries results), so its task is cancelled, and the gateway's
        task fails saying why (a 2025-11-25 upstream got the refusal as the error
        answering its request, `mcp_client_input.relay_input`, and ends its task itself)."""
        if self.input is not None:
            self.input.refuse(row.id, refused.message)
        assert row.upstream_task_id is not None
        try:
            await _tasks(entry).cancel(
                row.upstream_task_id,
                headers=entry.credentials.headers_for(principal),
                timeout_s=TIMEOUT_S,
            )
        except UpstreamError as exc:  # it still waits, for an answer that never comes
            log.warning("task %s at %s not cancelled: %s", row.id, _tasks(entry).name, exc.message)
        error = {"code": "client_input_refused", "message": refused.message}
        view = TaskView("failed", refused.message, error=error)
        return await self._ended(row, principal, view, entry, None)

    async def cancel(self, row: TaskRow, principal: Principal) -> None:
        entry = self._entry(row.tool)
        if entry is None or row.upstream_task_id is None:
            return
        headers = entry.credentials.headers_for(principal)
        try:
            await _tasks(entry).cancel(row.upstream_task_id, headers=headers, timeout_s=TIMEOUT_S)
        except UpstreamRejected:
            pass  # it ended meanwhile: the state says how
        except UpstreamError as exc:
            raise _unavailable(row, exc) from None
        finally:
            # Whatever it waited for will not be answered: the held tasks/result ends.
            if self.streams is not None:
                self.streams.stop(row.id, "the task was cancelled")

    async def _ended(
        self,
        row: TaskRow,
        principal: Principal,
        view: TaskView,
        entry: CatalogEntry,
        failure: GatewayError | None,
    ) -> TaskState:
        """An ended task: its result as the client gets it, the outcome recorded once."""
        if self.streams is not None:  # nothing of an ended task is held any more
            self.streams.stop(row.id, f"the task is {view.status}")
        call = _call_of(row, principal)
        result = entry.namespaced(view.result) if view.result is not None else None
        error = failure
        if result is None and error is None:
            code = (view.error or {}).get("code")
            text = (view.error or {}).get("message") or view.message or view.status
            error = UpstreamRejected(
                f"upstream task {row.upstream_task_id} {view.status}: {text}",
                rpc_code=code if isinstance(code, int) else types.INTERNAL_ERROR,
                rpc_message=str(text),
            )
        record = await anyio.to_thread.run_sync(lambda: self.store.claim_outcome(row.id))
        fields = {"task_id": row.id, "upstream_task_id": row.upstream_task_id}
        checked, error = self.pipeline.record_task_outcome(
            call, result, error, record=record, fields={**fields, "task_status": view.status}
        )
        status = OutcomeStatus.OK if error is None else OutcomeStatus.ERROR
        outcome = Outcome(row.request_id, row.tool, status, None, result=checked, error=error)
        wire = to_call_tool_result(outcome, View(row.endpoint))
        message = view.message or view.status
        if error is None:
            return TaskState(_status(view.status), message, result=wire)
        reason = {"code": getattr(error, "code", "upstream_error"), "message": error.message}
        return TaskState(_status(view.status), message, result=wire, error=reason)

    def _entry(self, tool: str) -> CatalogEntry | None:
        try:
            entry = self.pipeline.catalog.resolve(tool)
        except GatewayError:
            return None
        return entry if isinstance(getattr(entry.upstream, "tasks", None), UpstreamTasks) else None


def _tasks(entry: CatalogEntry) -> UpstreamTasks:
    tasks = getattr(entry.upstream, "tasks", None)
    assert isinstance(tasks, UpstreamTasks)
    return tasks


def _status(status: str) -> Status:
    # The upstream's statuses are the gateway's (`UpstreamTasks.get` checks them);
    # ``input_required`` too: what it waits for is relayed (docs/decisions/0041).
    return cast(Status, status)


def _call_of(row: TaskRow, principal: Principal) -> Operation:
    """The task's call, as its outcome and its relayed requests are recorded under."""
    return Operation(principal, "tools/call", row.tool, {}, "mcp", row.request_id)


def _unavailable(row: TaskRow, exc: UpstreamError) -> MCPError:
    return MCPError(
        code=-32000,
        message=f"the upstream of task {row.id} cannot be reached: {exc.message}; retry",
        data={"taskId": row.id, "retry_after_s": 2},
    )
