"""What a task of the gateway's is now, whatever its kind (docs/mcp.md, "Tasks"):

- ``result``: a task-augmented call answered at once, its result kept with the row;
- ``upstream``: an upstream's own task, passed through (docs/decisions/0030): its
  state is its upstream's, asked with ``tasks/get`` (`Passthrough.state`);
- a held call: the state of its approval and of the run that executes it once
  approved (`executor.held_calls`).

Read-only: what a read of a state records (an upstream task's outcome, once) is the
passthrough's.
"""

from __future__ import annotations

from typing import Any

import anyio

from gateway.approvals.errors import ApprovalsDisabled
from gateway.errors import GatewayError
from gateway.executor import held_calls
from gateway.executor.service import Executor
from gateway.operations import ClientInput
from gateway.surfaces.mcp_passthrough import Passthrough
from gateway.surfaces.mcp_task_input import PolledChannel
from gateway.surfaces.mcp_task_results import TaskState, answered_state, recorded_result
from gateway.surfaces.mcp_task_store import TaskRow
from gateway.surfaces.mcp_views import View
from gateway.types import Principal

# Upstream tasks asked about at once for a page of `tasks/list`: a bound on what one
# list asks of the upstreams together.
STATES_AT_ONCE = 8


class TaskStates:
    def __init__(self, passthrough: Passthrough, executor: Executor, public_url: str) -> None:
        self.passthrough = passthrough
        self.executor = executor
        self.public_url = public_url

    async def of_page(self, rows: list[TaskRow], principal: Principal) -> list[TaskState]:
        """The state of each of ``rows``, in their order. An upstream task's is a
        ``tasks/get`` at its upstream: asked together, at most `STATES_AT_ONCE` at a
        time, so a page costs about the slowest answer, not the sum. The first error in
        the rows' order is raised, once every question was answered."""
        states: list[TaskState | None] = [None] * len(rows)
        errors: dict[int, Exception] = {}
        limiter = anyio.CapacityLimiter(STATES_AT_ONCE)

        async def one(index: int, row: TaskRow) -> None:
            async with limiter:
                try:
                    states[index] = await self.of(row, principal)
                except Exception as exc:  # raised below, in order, as the loop would have
                    errors[index] = exc

        async with anyio.create_task_group() as group:
            for index, row in enumerate(rows):
                group.start_soon(one, index, row)
        if errors:
            raise errors[min(errors)]
        return [state for state in states if state is not None]

    async def of(
        self,
        row: TaskRow,
        principal: Principal | None = None,
        *,
        with_result: bool = False,
        client_input: ClientInput | None = None,
        polled: PolledChannel | None = None,
    ) -> TaskState:
        """The task's state now; an upstream task's with its result once it ended if
        ``with_result`` (asked by its owner, ``principal``, who is asked what it waits
        for through ``client_input`` or ``polled``: `Passthrough.state`)."""
        if row.kind == "result":
            return answered_state(row.result)
        if row.kind == "upstream":
            assert principal is not None  # the owner, who asks
            return await self.passthrough.state(
                row,
                principal,
                with_result=with_result,
                client_input=client_input,
                polled=polled,
            )
        assert row.run_id is not None and row.approval_id is not None
        try:
            held = await held_calls.held_state(self.executor, row.run_id, row.approval_id)
        except (ApprovalsDisabled, GatewayError) as exc:
            return TaskState("failed", f"the held call cannot be followed: {exc.message}")
        view = View(row.endpoint)
        result = recorded_result(row, held, view) if held.recorded is not None else None
        message = held.message
        if held.status == "working":
            message = f"{message}; decide at {self.links(row)['console_url']}"
        return TaskState(
            held.status,
            message,
            result=result,
            error=held.error,
            approval_id=held.approval.id,
            updated_at=held.approval.decided_at,
        )

    def links(self, row: TaskRow) -> dict[str, Any]:
        """What the client is told to find a task by: its id, and a held call's
        approval and the console page to decide it."""
        if row.approval_id is None:
            return {"task_id": row.id}
        return {
            "task_id": row.id,
            "approval_id": row.approval_id,
            "console_url": f"{self.public_url}/console#/approvals/{row.approval_id}",
        }
