"""The MCP server the gateway runs: the SDK's lowlevel `Server`, what it announces,
and which handler (`mcp_handlers`) answers which method (docs/mcp.md, "What passes"):
the lists, ``tools/call``, ``resources/read``, ``prompts/get``,
``completion/complete``, ``logging/setLevel`` and roots changes; subscriptions
(`mcp_subscriptions`); tasks in both eras (`mcp_tasks`). Every handler runs inside
`unavailability_as_retry`, so an engine or store that cannot answer is -32000 with a
retry hint, never an empty list or a denial.
"""

from __future__ import annotations

import logging
from typing import Any

import mcp_types as types
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions

from gateway.errors import GatewayError
from gateway.pipeline import Pipeline
from gateway.surfaces.mcp_calls import LocalTools
from gateway.surfaces.mcp_handlers import Handlers, session_id_of
from gateway.surfaces.mcp_lists import LIST_METHODS, ListAnswer, McpLists
from gateway.surfaces.mcp_principals import PrincipalCallers
from gateway.surfaces.mcp_relay import InputRelay
from gateway.surfaces.mcp_results import unavailability_as_retry
from gateway.surfaces.mcp_sessions import SessionBook
from gateway.surfaces.mcp_subscriptions import Subscriptions
from gateway.surfaces.mcp_task_input import TaskInput
from gateway.surfaces.mcp_task_streams import TaskStreams
from gateway.surfaces.mcp_tasks import TASKS_EXTENSION, McpTasks, UpdateTaskParams
from gateway.version import __version__

log = logging.getLogger(__name__)


class _GatewayServer(Server[Any]):
    """The SDK's server, announcing list-changed notifications at 2025-11-25 when there
    are sessions to send them on (the HTTP transports ask for the initialization
    options without any, which would say the lists never change)."""

    def __init__(self, *args: Any, list_changed: bool, listing: ListAnswer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._list_changed = list_changed
        # A list's result for a request, at a revision (`Handlers.listing`): what the
        # list handlers answer, and the direct path (`mcp_direct`).
        self.listing = listing
        # 2025-11-25 tasks (`mcp_tasks`): announced at initialize when served.
        self.tasks_capability: types.ServerTasksCapability | None = None

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        if notification_options is None and self._list_changed:
            notification_options = NotificationOptions(
                prompts_changed=True, resources_changed=True, tools_changed=True
            )
        options = super().create_initialization_options(
            notification_options, experimental_capabilities, extensions
        )
        if self.tasks_capability is not None:
            options.capabilities.tasks = self.tasks_capability
        return options


def build_mcp_server(
    pipeline: Pipeline,
    local_tools: LocalTools | None,
    book: SessionBook,
    relay: InputRelay,
    subscriptions: Subscriptions,
    *,
    sessions: bool,
    principals: PrincipalCallers,
    tasks: McpTasks | None = None,
) -> _GatewayServer:
    handlers = Handlers(
        pipeline, local_tools, book, relay, tasks, McpLists(pipeline.catalog), principals
    )
    server = _GatewayServer(
        "agent-tool-gateway",
        version=__version__,
        instructions="Tools, prompts and resources of every upstream behind this gateway, "
        "named <upstream>__<name> and gateway:<upstream>/<URI>. Requests are checked by "
        "policy and audited; a refused tool call returns isError with the reason.",
        # Lists differ per principal and change with pins: never shared, never fresh.
        cache_hints={method: CacheHint(ttl_ms=0, scope="private") for method in CACHEABLE_METHODS},
        on_call_tool=handlers.call_tool,
        on_read_resource=handlers.read_resource,
        on_get_prompt=handlers.get_prompt,
        on_completion=handlers.complete,
        # The schema of a 2026-era call's tool, for the SDK's check of its Mcp-Param-*
        # headers (without it the SDK would run tools/list before each call).
        get_tool_input_schema=lambda name: tool_input_schema(pipeline, name),
        list_changed=sessions,
        listing=handlers.listing,
    )
    server.middleware.append(unavailability_as_retry)  # outside every handler below
    # The lists answer a result dict of entries built once (`mcp_lists`), which the
    # constructor's parameters are not typed for (the runner takes either).
    for method in LIST_METHODS:
        server.add_request_handler(method, types.PaginatedRequestParams, handlers.list_items)
    # Registered directly: the constructor's parameter warns that logging is deprecated
    # at 2026-07-28, which the SDK already enforces (-32601 at that revision).
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, handlers.set_level)
    server.add_notification_handler(
        "notifications/roots/list_changed", types.NotificationParams, handlers.roots_changed
    )
    # Subscriptions (`mcp_subscriptions`): 2025-11-25 in a session, 2026-07-28 by listening.
    server.add_request_handler(
        "subscriptions/listen", types.SubscriptionsListenRequestParams, subscriptions.listen
    )
    if sessions:
        server.add_request_handler(
            "resources/subscribe",
            types.SubscribeRequestParams,
            lambda ctx, params: subscriptions.subscribe(ctx, params, handlers.session(ctx)),
        )
        server.add_request_handler(
            "resources/unsubscribe",
            types.UnsubscribeRequestParams,
            lambda ctx, params: subscriptions.unsubscribe(params, session_id_of(ctx)),
        )
    if tasks is not None:
        if local_tools is not None:
            tasks.declines = local_tools.handles
        tasks.relay = relay
        tasks.passthrough.input = TaskInput(relay.relays)
        tasks.passthrough.streams = TaskStreams(relay.relays, timeout_s=relay.timeout_s)
        tasks.in_session = lambda ctx: book.get(session_id_of(ctx)) is not None
        serve_tasks(server, tasks)
    return server


def serve_tasks(server: _GatewayServer, tasks: McpTasks) -> None:
    """Tasks in both eras (`mcp_tasks`): the 2025 capability, the 2026 extension, the
    ``tasks/*`` methods (``tasks/update``: answers to what an upstream's task waits
    for, 0041), and the 2025 task-augmented ``tools/call``."""
    server.tasks_capability = types.ServerTasksCapability.model_validate(
        {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    )
    server.extensions[TASKS_EXTENSION] = {}
    server.middleware.append(tasks.middleware)
    server.add_request_handler("tasks/get", types.GetTaskRequestParams, tasks.get)
    server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, tasks.result)
    server.add_request_handler("tasks/list", types.PaginatedRequestParams, tasks.list)
    server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, tasks.cancel)
    server.add_request_handler("tasks/update", UpdateTaskParams, tasks.update)


def tool_input_schema(pipeline: Pipeline, name: str) -> dict[str, Any] | None:
    """The input schema of the tool a client calls ``name``: a gateway name (`/mcp`), or
    an upstream's own name when one upstream alone has a tool of that name
    (`/mcp/{upstream}`; the SDK's hook does not say which endpoint asks). None when
    unknown, quarantined or ambiguous: the pipeline then refuses or validates the call
    itself. A gateway name is one lookup (this runs on every 2026-07-28 call)."""
    try:
        return pipeline.catalog.resolve(name).definition.input_schema
    except GatewayError:
        pass
    own = [tool for tool in pipeline.catalog.tools() if tool.upstream_tool == name]
    return own[0].input_schema if len(own) == 1 else None
