"""One upstream MCP server as the catalog uses it: its lists, and the operations the
gateway forwards to it (tools, resources, prompts, completions, subscriptions).

The connection itself, its supervision and the route each request takes (the shared
connection, or a calling session's own upstream session: docs/decisions/0034) are
`mcp_connection`'s; resource subscriptions are `mcp_subscriptions`'; an upstream's own
tasks are `mcp_upstream_tasks`'. Every request goes through `McpConnection.request`
(`mcp_requests.run`), the lean ones too.

Once the connection has negotiated the sessionless revision, a ``tools/call``,
``resources/read`` or ``prompts/get`` without progress or logs goes out through
`mcp_lean_call` instead of the SDK (docs/decisions/0010, 0026): same request on the
wire, a fraction of the client-side cost; its rounds run inside `mcp_requests.run` as
the SDK's do, so the relay, the deadline and the errors are the same.

An upstream's requests for client input (elicitation, sampling, roots) are relayed to
the calling client through the operation's `InputAsk`, in both eras
(`mcp_client_input`): a 2025-11-25 request reaches the connection's callbacks, a
2026-07-28 ``input_required`` result is driven to completion by
`mcp_client_input.until_complete`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.abc
import mcp_types as types
from mcp import Client

from gateway.config import McpHttpUpstream, McpStdioUpstream
from gateway.errors import UpstreamError
from gateway.operations import CallerSession, ClientInput, LogSink, ProgressCallback
from gateway.telemetry import TRACEPARENT
from gateway.types import ToolResult
from gateway.upstreams import mcp_client_input, mcp_offerings, mcp_requests
from gateway.upstreams.base import Reconnected, ResourceUpdated, UpstreamStatus
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_caller_sessions import SessionSlots
from gateway.upstreams.mcp_connection import McpConnection, Route
from gateway.upstreams.mcp_definitions import UpstreamOfferings
from gateway.upstreams.mcp_lean_call import LeanToolCaller, NeedsSdk, dump_answers, is_sessionless
from gateway.upstreams.mcp_stdio import StdioStarts
from gateway.upstreams.mcp_subscriptions import Subscriptions
from gateway.upstreams.mcp_upstream_tasks import UpstreamTasks, to_result

# Key under `_meta` carrying the idempotency key of an executor step.
IDEMPOTENCY_META_KEY = "io.agentgateway/idempotency-key"


class McpUpstream:
    def __init__(
        self,
        config: McpHttpUpstream | McpStdioUpstream,
        *,
        static_headers: dict[str, str],
        stdio_env: dict[str, str] | None = None,
        connect_timeout_s: float,
        slots: SessionSlots | None = None,
        stdio: StdioStarts | None = None,
    ) -> None:
        self.name = config.name
        self._config = config
        self.connection = McpConnection(
            config,
            static_headers=static_headers,
            stdio_env=stdio_env,
            connect_timeout_s=connect_timeout_s,
            slots=slots,
            stdio=stdio,
        )
        self._subscriptions = Subscriptions(self.connection)
        self._lean = (
            LeanToolCaller(config.name, config.url, headers={**config.headers, **static_headers})
            if isinstance(config, McpHttpUpstream)
            else None
        )
        connection = self.connection
        self.tasks = UpstreamTasks(
            self.name, connection.connected, lambda: connection.client, connection.request
        )

    @property
    def status(self) -> UpstreamStatus:
        return self.connection.status

    async def start(
        self,
        task_group: anyio.abc.TaskGroup,
        on_reconnect: Reconnected,
        on_updated: ResourceUpdated | None = None,
    ) -> None:
        """Returns after the first connection attempt, whether it succeeded or not.
        ``on_reconnect`` is also how a list-changed notification asks for a refresh;
        ``on_updated`` hears of updates to the resources subscribed to."""
        await self.connection.start(
            task_group, on_reconnect, on_updated, resubscribe=self._subscriptions.again
        )

    async def close(self) -> None:
        self.connection.close()
        if self._lean is not None:
            await self._lean.aclose()

    def end_session(self, session_id: str) -> None:
        """The calling session ended: its upstream session (if any) is closed."""
        self.connection.end_session(session_id)

    async def session_log_level(self, session_id: str, level: str) -> None:
        """The calling session set its log level: passed on to its upstream session."""
        await self.connection.session_log_level(session_id, level)

    async def session_roots_changed(self, session_id: str, client_input: ClientInput) -> None:
        """The calling session's roots changed: its upstream session is told."""
        await self.connection.session_roots_changed(session_id, client_input)

    # --- operations --------------------------------------------------------------------

    async def list_tools(self) -> list[UpstreamTool]:
        client = await self.connection.connected()

        async def every_page() -> list[UpstreamTool]:
            tools: list[UpstreamTool] = []
            cursor: str | None = None
            for _ in range(mcp_offerings.MAX_PAGES):
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools += [mcp_offerings.upstream_tool(tool) for tool in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools

        tools = await self.connection.request(
            "tools/list", every_page, headers={}, log=None, timeout_s=self._config.timeout_s
        )
        if self._lean is not None:
            self._lean.learn(tools)
        self.tasks.learn(tools)
        return tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None,
        headers: dict[str, str],
        progress: ProgressCallback | None,
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        session: CallerSession | None = None,
    ) -> ToolResult:
        meta = {IDEMPOTENCY_META_KEY: idempotency_key} if idempotency_key else None
        if TRACEPARENT in headers:  # a traced call (gateway.telemetry)
            meta = mcp_requests.with_trace(meta, headers)
        if progress is None:
            lean = await self._send_lean(
                "tools/call",
                {"name": name, "arguments": arguments},
                what=name,
                meta=meta,
                headers=headers,
                log=log,
                timeout_s=timeout_s,
                client_input=client_input,
            )
            if lean is not None:
                return to_result(lean)
        route = await self.connection.route(session)
        meta = mcp_requests.with_log_level(route.client, meta, log)

        def send(on: Client, responses: Any = None, state: str | None = None) -> Any:
            return on.session.call_tool(
                name,
                arguments,
                read_timeout_seconds=timeout_s,
                progress_callback=progress,
                input_responses=responses,
                request_state=state,
                meta=meta,
                allow_input_required=True,
            )

        result = await self._for_caller(
            name,
            route,
            send,
            headers=headers,
            log=log,
            timeout_s=timeout_s,
            client_input=client_input,
        )
        return to_result(result)

    async def _send_lean(
        self,
        method: str,
        params: dict[str, Any],
        *,
        what: str,
        meta: dict[str, Any] | None,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None,
    ) -> Any:
        """A ``tools/call``, ``resources/read`` or ``prompts/get`` sent lean, every round
        of it, inside `mcp_requests.run` as the SDK's rounds are (so the same deadline,
        relay of ``input_required`` answers and errors); its final result as the SDK's
        client would return it. None when it must go through the SDK instead: not
        sessionless, logs wanted, or a header mismatch on the first round."""
        client = await self.connection.connected()
        version = client.protocol_version
        if self._lean is None or log is not None or not is_sessionless(version):
            return None
        assert version is not None
        lean = self._lean
        capabilities = client_input.capabilities if client_input is not None else {}

        async def send(responses: Any = None, state: str | None = None) -> Any:
            try:
                return await lean.send(
                    method,
                    params,
                    protocol_version=version,
                    headers=headers,
                    meta=meta,
                    capabilities=capabilities,
                    input_responses=None if responses is None else dump_answers(responses),
                    request_state=state,
                )
            except NeedsSdk as exc:
                if state is None:
                    raise  # refused before it ran; the SDK re-lists the tools and retries
                # A later round: sending it again through the SDK would ask the client again.
                raise UpstreamError(
                    f"upstream {self.name} refused a later round of {what}: {exc}"
                ) from None

        async def complete() -> Any:
            return await mcp_client_input.until_complete(self.name, what, await send(), send)

        try:
            return await self.connection.request(
                what,
                complete,
                headers=headers,
                log=log,
                timeout_s=timeout_s,
                client_input=client_input,
            )
        except NeedsSdk:
            return None

    async def list_offerings(self) -> UpstreamOfferings:
        client = await self.connection.connected()
        return await self.connection.request(
            "its prompts and resources",
            lambda: mcp_offerings.list_offerings(client),
            headers={},
            log=None,
            timeout_s=self._config.timeout_s,
        )

    async def read_resource(
        self,
        uri: str,
        *,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        session: CallerSession | None = None,
    ) -> dict[str, Any]:
        traced = mcp_requests.with_trace(None, headers) if TRACEPARENT in headers else None
        lean = await self._send_lean(
            "resources/read",
            {"uri": uri},
            what=uri,
            meta=traced,
            headers=headers,
            log=log,
            timeout_s=timeout_s,
            client_input=client_input,
        )
        if lean is not None:
            return mcp_offerings.read_document(self.name, lean)
        route = await self.connection.route(session)
        meta = mcp_requests.with_log_level(route.client, traced, log)

        def send(on: Client, responses: Any = None, state: str | None = None) -> Any:
            return on.session.read_resource(
                uri,
                input_responses=responses,
                request_state=state,
                meta=meta,
                allow_input_required=True,
            )

        result = await self._for_caller(
            uri,
            route,
            send,
            headers=headers,
            log=log,
            timeout_s=timeout_s,
            client_input=client_input,
        )
        return mcp_offerings.read_document(self.name, result)

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, str],
        *,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        session: CallerSession | None = None,
    ) -> dict[str, Any]:
        traced = mcp_requests.with_trace(None, headers) if TRACEPARENT in headers else None
        lean = await self._send_lean(
            "prompts/get",
            {"name": name, "arguments": arguments},
            what=name,
            meta=traced,
            headers=headers,
            log=log,
            timeout_s=timeout_s,
            client_input=client_input,
        )
        if lean is not None:
            return mcp_offerings.prompt_document(self.name, lean)
        route = await self.connection.route(session)
        meta = mcp_requests.with_log_level(route.client, traced, log)

        def send(on: Client, responses: Any = None, state: str | None = None) -> Any:
            return on.session.get_prompt(
                name,
                arguments,
                input_responses=responses,
                request_state=state,
                meta=meta,
                allow_input_required=True,
            )

        result = await self._for_caller(
            name,
            route,
            send,
            headers=headers,
            log=log,
            timeout_s=timeout_s,
            client_input=client_input,
        )
        return mcp_offerings.prompt_document(self.name, result)

    async def subscribe_resource(
        self,
        uri: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        session: CallerSession | None = None,
    ) -> None:
        await self._subscriptions.subscribe(
            uri, headers=headers, timeout_s=timeout_s, session=session
        )

    async def unsubscribe_resource(self, uri: str, *, session: CallerSession | None = None) -> None:
        await self._subscriptions.unsubscribe(uri, session=session)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
        *,
        headers: dict[str, str],
        timeout_s: float,
        session: CallerSession | None = None,
    ) -> dict[str, Any]:
        route = await self.connection.route(session)
        what = ref.name if isinstance(ref, types.PromptReference) else ref.uri
        result = await self.connection.request(
            f"a completion of {what}",
            lambda: route.client.complete(ref, argument, context_arguments),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
            route=route,
        )
        return mcp_offerings.completion_document(result)

    async def _for_caller(
        self, what: str, route: Route, send: Callable[..., Any], **kwargs: Any
    ) -> Any:
        """A request on behalf of a caller through the SDK, every round of it."""

        async def on(session: Client) -> Any:
            def again(responses: Any = None, state: str | None = None) -> Any:
                return send(session, responses, state)

            return await mcp_client_input.until_complete(self.name, what, await again(), again)

        return await self.connection.request(
            what, lambda: on(route.client), caller=True, route=route, **kwargs
        )
