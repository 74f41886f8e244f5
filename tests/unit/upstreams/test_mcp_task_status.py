"""Status notifications of an upstream's tasks reach only the watcher of that task
(gateway.upstreams.mcp_task_status; docs/decisions/0041)."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest

from gateway.upstreams.mcp_task_status import TaskStatuses

pytestmark = pytest.mark.anyio


def _status(task_id: str, status: str = "working") -> types.TaskStatusNotificationParams:
    return types.TaskStatusNotificationParams.model_validate(
        {
            "taskId": task_id,
            "status": status,
            "createdAt": "2026-12-07T00:00:00Z",
            "lastUpdatedAt": "2026-12-07T00:00:01Z",
            "ttl": 1000,
        },
        by_name=False,
    )


async def test_a_notification_reaches_only_the_watcher_of_its_task() -> None:
    statuses = TaskStatuses("up")
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []

    async def to_mine(params: dict[str, Any]) -> None:
        mine.append(params)

    async def to_theirs(params: dict[str, Any]) -> None:
        theirs.append(params)

    with statuses.watching("up-1", to_mine), statuses.watching("up-2", to_theirs):
        await statuses.received(_status("up-1", "input_required"))
        await statuses.received(_status("up-3"))  # nobody watches it: dropped
    await statuses.received(_status("up-1", "completed"))  # no longer watched
    assert [(p["taskId"], p["status"]) for p in mine] == [("up-1", "input_required")]
    assert theirs == []


async def test_a_later_watcher_replaces_an_earlier_one_until_it_leaves() -> None:
    statuses = TaskStatuses("up")
    seen: list[str] = []

    async def first(params: dict[str, Any]) -> None:
        seen.append("first")

    async def second(params: dict[str, Any]) -> None:
        seen.append("second")

    with statuses.watching("up-1", first):
        with statuses.watching("up-1", second):
            await statuses.received(_status("up-1"))
        await statuses.received(_status("up-1"))
    await statuses.received(_status("up-1"))
    assert seen == ["second", "first"]


async def test_a_failing_watcher_does_not_fail_the_connection() -> None:
    statuses = TaskStatuses("up")

    async def gone(params: dict[str, Any]) -> None:
        raise ConnectionError("the client went away")

    with statuses.watching("up-1", gone):
        await statuses.received(_status("up-1"))  # logged, not raised
