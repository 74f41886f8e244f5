"""``notifications/tasks/status`` an upstream sends about its own tasks, to whoever
watches that task now (docs/decisions/0041).

The SDK's client has no type for this notification in its core tables: it reaches a
`NotificationBinding` of an extension, in a task of its own, outside any caller's
context. So it is routed by the upstream's task id to the one watcher registered for
that task (the owner's request in flight, `Passthrough.state`); one nobody watches is
dropped. An upstream's task id is known to the gateway only through a task row, which
only its owner may reach: no one else's watcher can be registered for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import mcp_types as types
from mcp.client.extension import ClientExtension, NotificationBinding

log = logging.getLogger(__name__)

METHOD = "notifications/tasks/status"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

OnStatus = Callable[[dict[str, Any]], Awaitable[None]]


class TaskStatuses:
    """The watchers of one upstream connection's tasks, by the upstream's task id."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._watchers: dict[str, OnStatus] = {}

    @contextlib.contextmanager
    def watching(self, task_id: str, on_status: OnStatus) -> Iterator[None]:
        """While inside, the task's status notifications go to ``on_status`` (a later
        watcher of the same task replaces an earlier one until it leaves)."""
        previous = self._watchers.get(task_id)
        self._watchers[task_id] = on_status
        try:
            yield
        finally:
            if self._watchers.get(task_id) is on_status:
                if previous is None:
                    del self._watchers[task_id]
                else:
                    self._watchers[task_id] = previous

    async def received(self, params: types.TaskStatusNotificationParams) -> None:
        watcher = self._watchers.get(params.task_id)
        if watcher is None:
            log.debug("status of task %s of %s: nobody watches it", params.task_id, self.upstream)
            return
        try:
            await watcher(params.model_dump(by_alias=True, mode="json", exclude_none=True))
        except Exception:  # the client went away: its request ends on its own
            log.debug("status of task %s not relayed", params.task_id, exc_info=True)

    def extension(self) -> ClientExtension:
        return _Observer(self)


class _Observer(ClientExtension):
    """The connection's observer of task status notifications. Its identifier is the
    tasks extension the connection speaks (task-augmented calls, ``tasks/*``)."""

    identifier = TASKS_EXTENSION

    def __init__(self, statuses: TaskStatuses) -> None:
        self._statuses = statuses

    def notifications(self) -> list[NotificationBinding[Any]]:
        return [
            NotificationBinding(
                method=METHOD,
                params_type=types.TaskStatusNotificationParams,
                handler=self._statuses.received,
            )
        ]
