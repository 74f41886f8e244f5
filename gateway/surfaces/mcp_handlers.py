"""The handlers of the MCP methods the gateway serves (`mcp_server` registers them).

Each handler only translates: the request (in the names of the endpoint's `View`)
becomes a pipeline list or an `Operation`, and the answer becomes the MCP result.
Everything that reaches an upstream (``tools/call``, ``resources/read``,
``prompts/get``, ``completion/complete``, ``logging/setLevel``) goes through
`Pipeline.call`; every list (``tools/list``, ``prompts/list``, ``resources/list``,
``resources/templates/list``) through the pipeline's one policy filter.

Upstream log messages reach the client that made the request they belong to, and
only one that asked: at 2026-07-28 by the request's own log-level ``_meta``, at
2025-11-25 by ``logging/setLevel`` in its session (a sessionless 2025 client gets
none: the specification lets a server choose, and choosing none keeps the fast path).

A request of a session (2025-11-25) reaches an upstream of that era on the session's
own upstream session (docs/decisions/0034); a 2026-07-28 request, sessionless, on the
one held for its principal (`mcp_principals`, docs/decisions/0043).
"""

from __future__ import annotations

import logging
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request

from gateway import telemetry
from gateway.operations import LOG_LEVELS, CallerSession, LogSink, Operation
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import client_info
from gateway.surfaces.mcp_calls import LocalTools, answer_tools_call, caller_of, run
from gateway.surfaces.mcp_context import http_request, meta_dict
from gateway.surfaces.mcp_lists import Listing, ListMethod, McpLists
from gateway.surfaces.mcp_principals import PrincipalCallers
from gateway.surfaces.mcp_relay import Asking, InputRelay, Prepare
from gateway.surfaces.mcp_relay_capabilities import relayable
from gateway.surfaces.mcp_results import mcp_result, refusal
from gateway.surfaces.mcp_sessions import SESSION_STATE_KEY, SessionBook
from gateway.surfaces.mcp_tasks import McpTasks
from gateway.surfaces.mcp_views import View
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.tracing import trace_of
from gateway.types import CallMethod, Outcome, OutcomeStatus, Principal

log = logging.getLogger(__name__)


_ROOTS_CHANGED = "notifications/roots/list_changed"


class Handlers:
    def __init__(
        self,
        pipeline: Pipeline,
        local_tools: LocalTools | None,
        book: SessionBook,
        relay: InputRelay,
        tasks: McpTasks | None,
        lists: McpLists,
        principals: PrincipalCallers,
    ) -> None:
        self.pipeline = pipeline
        self.principals = principals
        self.lists = lists
        self.local_tools = local_tools
        self.book = book
        self.relay = relay
        self.tasks = tasks

    # --- tools ------------------------------------------------------------------------

    async def list_items(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        """``tools/list``, ``prompts/list``, ``resources/list`` and
        ``resources/templates/list`` through the SDK's transport."""
        request, _, _ = self._caller(ctx)
        method: ListMethod = ctx.method  # type: ignore[assignment]  # registered for these
        return (await self.listing(request, method, ctx.protocol_version)).result

    async def listing(self, request: Request, method: ListMethod, version: str) -> Listing:
        """What the caller of ``request`` may see of a list ``method``, as the result
        at protocol revision ``version``: the one translation both the SDK's transport
        (`list_items`) and the direct path (`mcp_direct`) answer with. An engine that
        gives no answer raises (-32000 with a retry hint, `unavailability_as_retry`),
        never an empty list."""
        principal, view = caller_of(request), View.of(request)
        asking: dict[str, Any] = {
            "transport": "mcp",
            "request_id": request_id_of(request),
            "client": client_info(request),
            "upstream": view.upstream,
        }
        lists = self.pipeline.lists
        if method == "tools/list":
            own = self.local_tools
            local = own.definitions if own is not None and view.aggregated else ()
            tools = await lists.tools(principal, local=local, **asking)
            return self.lists.tools(tools, view, version, tasks=self.tasks is not None)
        if method == "prompts/list":
            prompts = await lists.offered("prompts", principal, **asking)
            return self.lists.prompts(prompts, view, version)
        if method == "resources/list":
            resources = await lists.offered("resources", principal, **asking)
            return self.lists.resources(resources, view, version)
        templates = await lists.offered("resource_templates", principal, **asking)
        return self.lists.templates(templates, view, version)

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> dict[str, Any] | types.InputRequiredResult:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(done, total, message)

        if (
            self.tasks is not None
            and self.tasks.wants_task(ctx, params)
            and not self._local(ctx, params)
        ):
            return await self.tasks.call_tool(ctx, params)
        # Relay progress only when the client asked for it: a progress token makes the
        # upstream answer as an event stream, which costs a round of latency.
        meta = meta_dict(params.meta)
        wants_progress = meta.get("progressToken", meta.get("progress_token")) is not None
        _, _, view = self._caller(ctx)
        target = view.name_in(params.name)
        asking = self._asking(ctx, "tools/call", target, params)
        session = self.session(ctx, "tools/call", target)
        return await self.relay.run(
            asking,
            lambda prepare: answer_tools_call(
                self.pipeline,
                self.local_tools,
                http_request(ctx),
                params,
                progress=progress if wants_progress else None,
                log=self._log_sink(ctx),
                prepare=prepare,
                session=session,
            ),
        )

    def _local(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> bool:
        """A tool the gateway offers itself (never held, never a task)."""
        return (
            self.local_tools is not None
            and View.of(http_request(ctx)).aggregated
            and self.local_tools.handles(params.name)
        )

    # --- resources --------------------------------------------------------------------

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
        live = self.book.attach(session_id_of(ctx), ctx.session)
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
        session_id = session_id_of(ctx)
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

    def _caller(self, ctx: ServerRequestContext[Any, Any]) -> tuple[Request, Principal, View]:
        request = http_request(ctx)
        # A session's handler requests give the gateway its SDK object, to send it list
        # changes later.
        self.book.attach(session_id_of(ctx), ctx.session)
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
            session=self.session(ctx, method, target),
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
        if not modern and self.book.get(session_id_of(ctx)) is not None:
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

    def session(
        self, ctx: ServerRequestContext[Any, Any], method: str = "", target: str = ""
    ) -> CallerSession | None:
        """Whom a 2025-11-25 upstream sees this request from, on an upstream session of
        that caller's own: the caller's session at the gateway when the request is of
        one (docs/decisions/0034); for a 2026-07-28 request, sessionless, its
        principal (docs/decisions/0043; ``method`` and ``target``: what that upstream
        session's requests outside any request are attributed to). None: the shared
        connection (a sessionless 2025-11-25 request)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            request = http_request(ctx)
            return self.principals.caller(
                caller_of(request),
                request.url.path,
                ctx.session.client_capabilities,
                method=method,
                target=target,
                request_id=request_id_of(request),
            )
        return self.book.caller(session_id_of(ctx), relayable(ctx.session.client_capabilities))

    def _log_sink(self, ctx: ServerRequestContext[Any, Any]) -> LogSink | None:
        """Where this request's upstream log messages go, if the client asked for any."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            level = meta_dict(ctx.meta).get(LOG_LEVEL_META_KEY)
        else:
            live = self.book.attach(session_id_of(ctx), ctx.session)
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


def session_id_of(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The session of a request the stateful transport served (`mcp_sessions`)."""
    return getattr(http_request(ctx).state, SESSION_STATE_KEY, None)
