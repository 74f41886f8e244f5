"""The MCP methods the gateway serves, as handlers of the SDK's lowlevel `Server`
(docs/mcp.md, "What passes").

Each handler only translates: the request (in the names of the endpoint's `View`)
becomes a pipeline list or an `Operation`, and the answer becomes the MCP result.
Everything that reaches an upstream (``tools/call``, ``resources/read``,
``prompts/get``, ``completion/complete``) goes through `Pipeline.call`; every list
(``tools/list``, ``prompts/list``, ``resources/list``, ``resources/templates/list``)
through the pipeline's one policy filter. ``logging/setLevel`` is the gateway's own:
it sets the level at which upstream log messages are relayed to this session, and is
passed on to the session's own upstream sessions (docs/decisions/0034), whose log
messages sent outside any request reach the session's own stream.

Upstream log messages reach the client that made the request they belong to, and
only one that asked: at 2026-07-28 by the request's own log-level ``_meta``, at
2025-11-25 by ``logging/setLevel`` in its session (a sessionless 2025 client gets
none: the specification lets a server choose, and choosing none keeps the fast path).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import mcp_types as types
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request

from gateway import telemetry
from gateway.errors import GatewayError
from gateway.lists import Offered
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import client_info
from gateway.surfaces.mcp_calls import LocalTools, answer_tools_call, caller_of, run
from gateway.surfaces.mcp_lists import McpLists
from gateway.surfaces.mcp_relay import Asking, InputRelay, Prepare, relayable
from gateway.surfaces.mcp_results import mcp_result, refusal, unavailability_as_retry
from gateway.surfaces.mcp_sessions import SESSION_STATE_KEY, SessionBook
from gateway.surfaces.mcp_subscriptions import Subscriptions
from gateway.surfaces.mcp_tasks import TASKS_EXTENSION, McpTasks
from gateway.surfaces.mcp_views import View
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.tracing import trace_of
from gateway.types import (
    LOG_LEVELS,
    CallerSession,
    CallMethod,
    LogSink,
    Operation,
    Outcome,
    OutcomeStatus,
    Principal,
)
from gateway.version import __version__

log = logging.getLogger(__name__)

_ROOTS_CHANGED = "notifications/roots/list_changed"


class _GatewayServer(Server[Any]):
    """The SDK's server, announcing list-changed notifications at 2025-11-25 when there
    are sessions to send them on (the HTTP transports ask for the initialization
    options without any, which would say the lists never change)."""

    def __init__(self, *args: Any, list_changed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._list_changed = list_changed
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
    tasks: McpTasks | None = None,
) -> Server[Any]:
    handlers = _Handlers(pipeline, local_tools, book, relay, tasks, McpLists(pipeline.catalog))
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
    )
    server.middleware.append(unavailability_as_retry)  # outside every handler below
    # The lists answer a result dict of entries built once (`mcp_lists`), which the
    # constructor's parameters are not typed for (the runner takes either).
    for method, list_handler in (
        ("tools/list", handlers.list_tools),
        ("resources/list", handlers.list_resources),
        ("resources/templates/list", handlers.list_resource_templates),
        ("prompts/list", handlers.list_prompts),
    ):
        server.add_request_handler(method, types.PaginatedRequestParams, list_handler)
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
            lambda ctx, params: subscriptions.unsubscribe(params, _session_id(ctx)),
        )
    if tasks is not None:
        if local_tools is not None:
            tasks.declines = local_tools.handles
        serve_tasks(server, tasks)
    return server


def serve_tasks(server: _GatewayServer, tasks: McpTasks) -> None:
    """Tasks in both eras (`mcp_tasks`): the 2025 capability, the 2026 extension, the
    ``tasks/*`` methods, and the 2025 task-augmented ``tools/call``."""
    server.tasks_capability = types.ServerTasksCapability.model_validate(
        {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    )
    server.extensions[TASKS_EXTENSION] = {}
    server.middleware.append(tasks.middleware)
    server.add_request_handler("tasks/get", types.GetTaskRequestParams, tasks.get)
    server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, tasks.result)
    server.add_request_handler("tasks/list", types.PaginatedRequestParams, tasks.list)
    server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, tasks.cancel)


class _Handlers:
    def __init__(
        self,
        pipeline: Pipeline,
        local_tools: LocalTools | None,
        book: SessionBook,
        relay: InputRelay,
        tasks: McpTasks | None,
        lists: McpLists,
    ) -> None:
        self.pipeline = pipeline
        self.lists = lists
        self.local_tools = local_tools
        self.book = book
        self.relay = relay
        self.tasks = tasks

    # --- tools ------------------------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        request, principal, view = self._caller(ctx)
        request_id = request_id_of(request)
        # An engine that gives no answer is -32000 with a retry hint
        # (`unavailability_as_retry`), never an empty list.
        local = (
            self.local_tools.definitions if self.local_tools is not None and view.aggregated else ()
        )
        tools = await self.pipeline.lists.tools(
            principal,
            transport="mcp",
            request_id=request_id,
            client=client_info(request),
            upstream=view.upstream,
            local=local,
        )
        return self.lists.tools(tools, view, ctx.protocol_version, tasks=self.tasks is not None)

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(done, total, message)

        if (
            self.tasks is not None
            and self.tasks.wants_task(ctx, params)
            and not self._local(ctx, params)
        ):
            return await self.tasks.call_tool(ctx, params)  # type: ignore[return-value]
        # Relay progress only when the client asked for it: a progress token makes the
        # upstream answer as an event stream, which costs a round of latency.
        meta = _meta(params.meta)
        wants_progress = meta.get("progressToken", meta.get("progress_token")) is not None
        _, _, view = self._caller(ctx)
        asking = self._asking(ctx, "tools/call", view.name_in(params.name), params)
        session = self.session(ctx)
        return await self.relay.run(
            asking,
            lambda prepare: answer_tools_call(
                self.pipeline,
                self.local_tools,
                _request(ctx),
                params,
                progress=progress if wants_progress else None,
                log=self._log_sink(ctx),
                prepare=lambda operation: replace(prepare(operation), session=session),
            ),
        )

    def _local(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> bool:
        """A tool the gateway offers itself (never held, never a task)."""
        return (
            self.local_tools is not None
            and View.of(_request(ctx)).aggregated
            and self.local_tools.handles(params.name)
        )

    # --- resources --------------------------------------------------------------------

    async def list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        view, resources = await self._list(ctx, "resources")
        return self.lists.resources(resources, view, ctx.protocol_version)

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        view, templates = await self._list(ctx, "resource_templates")
        return self.lists.templates(templates, view, ctx.protocol_version)

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        _, _, view = self._caller(ctx)
        uri = str(params.uri)
        target = view.uri_in(uri)

        async def read(prepare: Prepare) -> types.ReadResourceResult:
            outcome = await self._operate(ctx, "resources/read", target, {}, prepare)
            return types.ReadResourceResult.model_validate(
                mcp_result(outcome, view, asked=uri, is_uri=True)
            )

        return await self.relay.run(self._asking(ctx, "resources/read", target, params), read)

    # --- prompts ----------------------------------------------------------------------

    async def list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        view, prompts = await self._list(ctx, "prompts")
        return self.lists.prompts(prompts, view, ctx.protocol_version)

    async def get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult | types.InputRequiredResult:
        _, _, view = self._caller(ctx)
        arguments = dict(params.arguments or {})
        target = view.name_in(params.name)

        async def get(prepare: Prepare) -> types.GetPromptResult:
            outcome = await self._operate(ctx, "prompts/get", target, arguments, prepare)
            return types.GetPromptResult.model_validate(
                mcp_result(outcome, view, asked=params.name)
            )

        return await self.relay.run(self._asking(ctx, "prompts/get", target, params), get)

    # --- completions and logging --------------------------------------------------------

    async def complete(
        self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        _, _, view = self._caller(ctx)
        ref = params.ref
        is_uri = not isinstance(ref, types.PromptReference)
        if isinstance(ref, types.PromptReference):
            asked, target = ref.name, view.name_in(ref.name)
        else:
            asked, target = ref.uri, view.uri_in(ref.uri)
        arguments: dict[str, Any] = {
            "argument": {"name": params.argument.name, "value": params.argument.value}
        }
        if params.context is not None and params.context.arguments is not None:
            arguments["context"] = {"arguments": dict(params.context.arguments)}
        outcome = await self._operate(ctx, "completion/complete", target, arguments)
        return types.CompleteResult.model_validate(
            mcp_result(outcome, view, asked=asked, is_uri=is_uri)
        )

    async def set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """Decided and audited like every method that reaches upstreams (the pipeline:
        `LogLevelTarget`), which passes it on to the session's own upstream sessions
        (docs/decisions/0034); a refused one changes nothing."""
        _, _, view = self._caller(ctx)
        level = str(params.level)
        outcome = await self._operate(
            ctx, "logging/setLevel", view.upstream or "*", {"level": level}
        )
        if outcome.status is not OutcomeStatus.OK:
            raise refusal(outcome, asked=level, is_uri=False)
        live = self.book.attach(_session_id(ctx), ctx.session)
        if live is not None:
            live.log_level = level
        # Sessionless, the level cannot outlive this request: accepted, and no upstream
        # log message is relayed (docs/mcp.md, "Logging").
        return types.EmptyResult()

    async def roots_changed(
        self, ctx: ServerRequestContext[Any, Any], params: types.NotificationParams
    ) -> None:
        """``notifications/roots/list_changed`` of a session: its own upstream sessions
        are told, so an upstream that keeps its roots asks again. It asks outside any
        request, so on the session's own stream, decided and audited like every
        ``roots/list`` (`InputRelay.standalone`). Sessionless, nothing could keep
        roots: ignored."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        session_id = _session_id(ctx)
        if session_id is None or self.book.get(session_id) is None:
            return
        request, principal, view = self._caller(ctx)
        asking = Asking(
            principal=principal,
            endpoint=request.url.path,
            method=_ROOTS_CHANGED,
            target=view.upstream or "*",
            arguments={},
            modern=False,
            capabilities=ctx.session.client_capabilities,
            request_id=request_id_of(request),
            session=ctx.session,
        )
        # What policy sees as what led to the upstream's roots/list (for_method).
        led_by = Operation(
            principal=principal,
            method=_ROOTS_CHANGED,  # type: ignore[arg-type]  # a notification, not a call
            target=asking.target,
            arguments={},
            transport="mcp",
            request_id=asking.request_id,
            client=client_info(request),
        )
        await self.pipeline.catalog.session_roots_changed(
            session_id, self.relay.standalone(asking, led_by), view.upstream
        )

    # --- shared -------------------------------------------------------------------------

    async def _list(self, ctx: ServerRequestContext[Any, Any], kind: Offered) -> tuple[View, Any]:
        """The view and what of ``kind`` the caller may see on it."""
        request, principal, view = self._caller(ctx)
        listed = await self.pipeline.lists.offered(
            kind,  # type: ignore[call-overload]
            principal,
            transport="mcp",
            request_id=request_id_of(request),
            client=client_info(request),
            upstream=view.upstream,
        )
        return view, listed

    def _caller(self, ctx: ServerRequestContext[Any, Any]) -> tuple[Request, Principal, View]:
        request = _request(ctx)
        # A session's handler requests give the gateway its SDK object, to send it list
        # changes later.
        self.book.attach(_session_id(ctx), ctx.session)
        return request, caller_of(request), View.of(request)

    async def _operate(
        self,
        ctx: ServerRequestContext[Any, Any],
        method: CallMethod,
        target: str,
        arguments: dict[str, Any],
        prepare: Prepare | None = None,
    ) -> Outcome:
        request, principal, _ = self._caller(ctx)
        operation = Operation(
            principal=principal,
            method=method,
            target=target,
            arguments=arguments,
            transport="mcp",
            request_id=request_id_of(request),
            client=client_info(request),
            log=self._log_sink(ctx),
            trace=trace_of(request, ctx.meta) if telemetry.ON else None,
            session=self.session(ctx),
        )
        if prepare is not None:  # how the upstream's requests for client input reach it
            operation = prepare(operation)
        return await run(self.pipeline, operation)

    def _asking(
        self, ctx: ServerRequestContext[Any, Any], method: str, target: str, params: Any
    ) -> Asking:
        """What the relay of requests for client input needs of this request."""
        request, principal, _ = self._caller(ctx)
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        session = None
        if not modern and self.book.get(_session_id(ctx)) is not None:
            session = ctx.session  # a 2025-11-25 session: requests on the call's stream
        arguments = {} if method == "resources/read" else dict(params.arguments or {})
        return Asking(
            principal=principal,
            endpoint=request.url.path,
            method=method,
            target=target,
            arguments=arguments,
            modern=modern,
            capabilities=ctx.session.client_capabilities,
            request_id=request_id_of(request),
            session=session,
            related_request_id=ctx.request_id,
            request_state=params.request_state,
            input_responses=params.input_responses,
        )

    def session(self, ctx: ServerRequestContext[Any, Any]) -> CallerSession | None:
        """The caller's session at the gateway, when this request is of one: a
        2025-11-25 upstream is reached on an upstream session of its own
        (docs/decisions/0034)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        return self.book.caller(_session_id(ctx), relayable(ctx.session.client_capabilities))

    def _log_sink(self, ctx: ServerRequestContext[Any, Any]) -> LogSink | None:
        """Where this request's upstream log messages go, if the client asked for any."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            level = _meta(ctx.meta).get(LOG_LEVEL_META_KEY)
        else:
            live = self.book.attach(_session_id(ctx), ctx.session)
            level = live.log_level if live is not None else None
        if level not in LOG_LEVELS:
            return None
        session, related = ctx.session, ctx.request_id

        async def send(level: str, data: Any, logger: str | None) -> None:
            params = types.LoggingMessageNotificationParams.model_validate(
                {"level": level, "data": data, "logger": logger}
            )
            notification = types.LoggingMessageNotification(params=params)
            await session.send_notification(notification, related_request_id=related)

        return LogSink(str(level), send)


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


def _meta(meta: Any) -> dict[str, Any]:
    if meta is None:
        return {}
    if isinstance(meta, dict):
        return meta
    dumped: dict[str, Any] = meta.model_dump(by_alias=True)
    return dumped


def _session_id(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The session of a request the stateful transport served (`mcp_sessions`)."""
    return getattr(_request(ctx).state, SESSION_STATE_KEY, None)


def _request(ctx: ServerRequestContext[Any, Any]) -> Request:
    request = ctx.request
    if not isinstance(request, Request):  # only reachable if mounted on a non-HTTP transport
        raise MCPError(code=types.INTERNAL_ERROR, message="the gateway serves MCP over HTTP only")
    return request
