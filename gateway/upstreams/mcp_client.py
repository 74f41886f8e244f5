"""A long-lived connection to one upstream MCP server (Streamable HTTP or stdio).

The SDK's `Client` opens its task groups in the task that enters it, and a transport
failure cancels that task. So each upstream is entered inside its own supervisor task
(started on the app's task group); requests only *use* the connected client. The
supervisor reconnects with backoff after a failure and tells the catalog, so the lists
are re-read after every reconnect, and whenever the upstream says they changed
(`mcp_changes`).

Every request goes through `mcp_requests.run`, the lean ones too: the caller's
credential headers, log sink and client input ride along, and failures become
`UpstreamError`s.
Once the connection has negotiated the sessionless revision, a ``tools/call``,
``resources/read`` or ``prompts/get`` without progress or logs goes out through
`mcp_lean_call` instead of the SDK (docs/decisions/0010, 0026): same request on the
wire, a fraction of the client-side cost; its rounds run inside `mcp_requests.run` as
the SDK's do, so the relay, the deadline and the errors are the same.

An upstream's requests for client input (elicitation, sampling, roots) are relayed to
the calling client through the operation's `InputAsk`, in both eras
(`mcp_requests`): a 2025-11-25 request reaches the connection's callbacks, a
2026-07-28 ``input_required`` result is driven to completion by
`mcp_requests.until_complete`.

A client with a session at the gateway (`gateway.types.CallerSession`) reaches a
2025-11-25 upstream on an upstream session of its own (`mcp_caller_sessions`,
docs/decisions/0034): its calls, reads, prompts, completions and subscriptions go
there, and that session's requests for client input (roots too) are its own. Lists,
sessionless callers and 2026-07-28 upstreams (sessionless themselves) use the shared
connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.config import McpHttpUpstream, McpStdioUpstream
from gateway.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable
from gateway.telemetry import TRACEPARENT
from gateway.types import CallerSession, ClientInput, LogSink, ProgressCallback, ToolResult
from gateway.upstreams import mcp_capabilities, mcp_offerings, mcp_requests
from gateway.upstreams.base import Reconnected, ResourceUpdated, UpstreamStatus
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_caller_sessions import CallerConnection, CallerSessions, SessionSlots
from gateway.upstreams.mcp_changes import ChangeWatcher
from gateway.upstreams.mcp_definitions import UpstreamOfferings
from gateway.upstreams.mcp_lean_call import LeanToolCaller, NeedsSdk, dump_answers, is_sessionless
from gateway.upstreams.mcp_requests import describe as _describe
from gateway.upstreams.mcp_upstream_tasks import UpstreamTasks, to_result

log = logging.getLogger(__name__)

# Key under `_meta` carrying the idempotency key of an executor step.
IDEMPOTENCY_META_KEY = "io.agentgateway/idempotency-key"

_MAX_BACKOFF_S = 30.0
_T = TypeVar("_T")
# Upstream sessions for calling sessions when the app gives no shared bound (tests).
_DEFAULT_SLOTS = 100


@dataclass(frozen=True)
class _Route:
    """The connection a request goes on: the shared one, or a calling session's own."""

    client: Client
    in_flight: mcp_requests.InFlight
    mark_broken: Callable[[BaseException], None]
    own: CallerConnection | None = None


class McpUpstream:
    def __init__(
        self,
        config: McpHttpUpstream | McpStdioUpstream,
        *,
        static_headers: dict[str, str],
        stdio_env: dict[str, str] | None = None,
        connect_timeout_s: float,
        slots: SessionSlots | None = None,
    ) -> None:
        self.name = config.name
        self._config = config
        self._static_headers = static_headers
        self._stdio_env = stdio_env or {}
        self._connect_timeout_s = connect_timeout_s
        self._on_reconnect: Reconnected | None = None
        self._on_updated: ResourceUpdated | None = None
        self._client: Client | None = None
        self._broken = anyio.Event()
        self._last_error: str | None = "not connected yet"
        self._scope: anyio.CancelScope | None = None
        self._changes = ChangeWatcher(config.name)
        # Subscribers per upstream resource URI (the upstream is subscribed once).
        self._subscribed: dict[str, int] = {}
        # (calling session, upstream URI) subscribed on that session's own upstream session.
        self._made_own: set[tuple[str, str]] = set()
        # Requests in flight, to attribute an upstream's request that names no caller.
        self._in_flight = mcp_requests.InFlight()
        self._started = False
        self.connections = 0
        self._lean = (
            LeanToolCaller(config.name, config.url, headers={**config.headers, **static_headers})
            if isinstance(config, McpHttpUpstream)
            else None
        )
        self.tasks = UpstreamTasks(self.name, self._connected, lambda: self._client, self._request)
        self.callers = CallerSessions(
            self.name,
            self._caller_client,
            slots or SessionSlots(_DEFAULT_SLOTS),
            open_timeout_s=config.timeout_s,
        )

    @property
    def status(self) -> UpstreamStatus:
        return UpstreamStatus(connected=self._client is not None, detail=self._last_error)

    async def start(
        self,
        task_group: anyio.abc.TaskGroup,
        on_reconnect: Reconnected,
        on_updated: ResourceUpdated | None = None,
    ) -> None:
        """Returns after the first connection attempt, whether it succeeded or not.
        ``on_reconnect`` is also how a list-changed notification asks for a refresh;
        ``on_updated`` hears of updates to the resources subscribed to."""
        self._on_reconnect = on_reconnect
        self._on_updated = on_updated
        self._changes.start(task_group, on_reconnect, on_updated)
        self.callers.start(task_group)
        await task_group.start(self._supervise)

    async def close(self) -> None:
        self.callers.close_all()
        if self._scope is not None:
            self._scope.cancel()
        if self._lean is not None:
            await self._lean.aclose()

    # --- connection supervision ------------------------------------------------------

    def _make_client(self) -> Client:
        """The shared connection: it declares everything the gateway can relay."""
        elicit, sample, roots = mcp_requests.relay_input(self.name, self._in_flight)
        return self._client_of(
            self._transport(),
            message_handler=self._changes.on_message,
            elicit=elicit,
            sample=sample,
            roots=roots,
        )

    def _caller_client(self, own: CallerConnection, capabilities: dict[str, Any]) -> Client:
        """A calling session's own upstream session (`mcp_caller_sessions`): the
        handshake declares what the caller declared that the gateway relays, and roots
        are relayed on it (they are this client's)."""
        elicit, sample, roots = mcp_requests.relay_input(self.name, own.in_flight, shared=False)

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ResourceUpdatedNotification):
                uri = str(message.params.uri)
                if uri in own.subscribed and self._on_updated is not None:
                    await self._on_updated(self.name, uri, own.session_id)
            else:  # a list change: the catalog re-reads the (shared) lists
                await self._changes.on_message(message)

        return self._client_of(
            self._transport(),
            message_handler=on_message,
            elicit=elicit if "elicitation" in capabilities else None,
            sample=sample if "sampling" in capabilities else None,
            roots=roots if "roots" in capabilities else None,
            mode="legacy",
        )

    def _client_of(
        self,
        transport: Any,
        *,
        message_handler: Callable[[Any], Awaitable[None]],
        elicit: Any,
        sample: Any,
        roots: Any,
        mode: str = "auto",
    ) -> Client:
        # cache=None: the gateway diffs fresh tool lists; a cached list would hide changes.
        # A callback left out is a capability not declared.
        return Client(
            transport,
            cache=None,
            read_timeout_seconds=self._config.timeout_s,
            logging_callback=mcp_requests.relay_log(self.name),
            message_handler=message_handler,
            elicitation_callback=elicit,
            sampling_callback=sample,
            list_roots_callback=roots,
            mode=mode,
        )

    def _transport(self) -> Any:
        config = self._config
        if isinstance(config, McpStdioUpstream):
            params = StdioServerParameters(
                command=config.command[0],
                args=config.command[1:],
                env={**config.env, **self._stdio_env} or None,
                cwd=config.cwd,
            )
            transport = stdio_client(params)
        else:
            http = httpx2.AsyncClient(
                headers={**config.headers, **self._static_headers},
                # The per-call limit is enforced above (fail_after, read_timeout_seconds).
                # A transport read timeout would instead tear down the whole connection,
                # failing every other call on it, so it is kept well above that limit.
                timeout=httpx2.Timeout(config.timeout_s * 2 + 30, connect=self._connect_timeout_s),
                event_hooks={"request": [mcp_requests.apply_call_headers]},
                follow_redirects=False,
            )
            transport = mcp_requests.http_transport(config.url, http)
        return transport

    async def _supervise(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        backoff = 0.25
        with anyio.CancelScope() as scope:
            self._scope = scope
            while True:
                # A transport failure cancels the Client's task group, which ends the
                # `async with` with an ExceptionGroup: caught here, then reconnected.
                try:
                    async with self._make_client() as client:
                        backoff = 0.25
                        await self._serve(client, task_status=task_status)
                except Exception as exc:
                    self._last_error = _describe(exc)
                    log.warning("upstream %s: connection failed: %s", self.name, self._last_error)
                finally:
                    self._client = None
                self._report_started(task_status)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _report_started(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        if not self._started:
            self._started = True
            task_status.started()

    async def _serve(self, client: Client, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        mcp_capabilities.declare_per_request(client.session)
        self._client = client
        self._last_error = None
        self._broken = anyio.Event()
        self.connections += 1
        log.info("upstream %s connected (protocol %s)", self.name, client.protocol_version)
        if self._started and self._on_reconnect is not None:
            await self._on_reconnect(self.name)  # a reconnect: the tool list may have changed
            if self._subscribed and not is_sessionless(client.protocol_version):
                for uri in list(self._subscribed):  # a new session: subscribe again
                    try:
                        shared = _Route(client, self._in_flight, self._mark_broken)
                        await self._subscribe_upstream(shared, uri, {}, self._config.timeout_s)
                    except UpstreamError as exc:
                        log.warning("upstream %s: %s not subscribed again: %s", self.name, uri, exc)
        self._report_started(task_status)
        async with anyio.create_task_group() as watching:
            if is_sessionless(client.protocol_version):
                watching.start_soon(self._changes.listen, client)
            await self._broken.wait()
            watching.cancel_scope.cancel()

    async def _connected(self) -> Client:
        client = self._client
        if client is None:
            raise UpstreamUnavailable(
                f"upstream {self.name} is not connected ({self._last_error or 'reconnecting'})"
            )
        return client

    def _mark_broken(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        self._broken.set()

    async def _route(self, session: CallerSession | None) -> _Route:
        """Where a request on behalf of a caller goes: a calling session's own upstream
        session when the upstream speaks 2025-11-25 (opened at its first request),
        else the shared connection."""
        client = await self._connected()
        if session is None or is_sessionless(client.protocol_version):
            return _Route(client, self._in_flight, self._mark_broken)
        own = await self.callers.connection(session)
        assert own.client is not None
        return _Route(own.client, own.in_flight, own.mark_broken, own)

    def end_session(self, session_id: str) -> None:
        """The calling session ended: its upstream session (if any) is closed."""
        self.callers.end(session_id)

    # --- operations --------------------------------------------------------------------

    async def list_tools(self) -> list[UpstreamTool]:
        client = await self._connected()

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

        tools = await self._request(
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
        route = await self._route(session)
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
        client = await self._connected()
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
            return await mcp_requests.until_complete(self.name, what, await send(), send)

        try:
            return await self._request(
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
        client = await self._connected()
        return await self._request(
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
        route = await self._route(session)
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
        route = await self._route(session)
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
        route = await self._route(session)
        client = route.client
        capabilities = client.server_capabilities.resources
        if capabilities is None or not capabilities.subscribe:
            raise UpstreamRejected(
                f"upstream {self.name} does not offer resource subscriptions",
                rpc_code=types.METHOD_NOT_FOUND,
                rpc_message=f"upstream {self.name} does not offer resource subscriptions",
            )
        if route.own is not None:  # the calling session's own upstream session
            if uri not in route.own.subscribed:
                await self._subscribe_upstream(route, uri, headers, timeout_s)
                route.own.subscribed.add(uri)
            self._made_own.add((route.own.session_id, uri))
            return
        count = self._subscribed.get(uri, 0)
        self._subscribed[uri] = count + 1
        if count:
            return  # already subscribed for another client
        try:
            if is_sessionless(client.protocol_version):
                self._changes.watch(frozenset(self._subscribed))
            else:
                await self._subscribe_upstream(route, uri, headers, timeout_s)
                self._changes.watch(frozenset(self._subscribed))
        except BaseException:
            await self.unsubscribe_resource(uri)
            raise

    async def _subscribe_upstream(
        self, route: _Route, uri: str, headers: dict[str, str], timeout_s: float
    ) -> None:
        await self._request(
            f"a subscription to {uri}",
            lambda: route.client.session.send_request(
                types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)),
                types.EmptyResult,
            ),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
            route=route,
        )

    async def unsubscribe_resource(self, uri: str, *, session: CallerSession | None = None) -> None:
        if session is not None and (session.id, uri) in self._made_own:
            # Made on the calling session's own upstream session (which may be closed).
            self._made_own.discard((session.id, uri))
            own = self.callers.existing(session.id)
            if own is not None and own.client is not None and uri in own.subscribed:
                own.subscribed.discard(uri)
                await self._unsubscribe_upstream(
                    _Route(own.client, own.in_flight, own.mark_broken, own), uri
                )
            return
        count = self._subscribed.get(uri, 0)
        if count > 1:
            self._subscribed[uri] = count - 1
            return
        self._subscribed.pop(uri, None)
        self._changes.watch(frozenset(self._subscribed))
        client = self._client
        if client is None or is_sessionless(client.protocol_version):
            return
        await self._unsubscribe_upstream(_Route(client, self._in_flight, self._mark_broken), uri)

    async def _unsubscribe_upstream(self, route: _Route, uri: str) -> None:
        try:
            await self._request(
                f"the end of a subscription to {uri}",
                lambda: route.client.session.send_request(
                    types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri)),
                    types.EmptyResult,
                ),
                headers={},
                log=None,
                timeout_s=self._config.timeout_s,
                route=route,
            )
        except UpstreamError as exc:  # it sends an update too many, which nobody gets
            log.info("upstream %s: %s not unsubscribed: %s", self.name, uri, exc.message)

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
        route = await self._route(session)
        what = ref.name if isinstance(ref, types.PromptReference) else ref.uri
        result = await self._request(
            f"a completion of {what}",
            lambda: route.client.complete(ref, argument, context_arguments),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
            route=route,
        )
        return mcp_offerings.completion_document(result)

    async def _for_caller(
        self, what: str, route: _Route, send: Callable[..., Any], **kwargs: Any
    ) -> Any:
        """A request on behalf of a caller through the SDK, every round of it."""

        async def on(session: Client) -> Any:
            def again(responses: Any = None, state: str | None = None) -> Any:
                return send(session, responses, state)

            return await mcp_requests.until_complete(self.name, what, await again(), again)

        return await self._request(
            what, lambda: on(route.client), caller=True, route=route, **kwargs
        )

    async def _request(
        self,
        what: str,
        send: Callable[[], Awaitable[_T]],
        *,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        caller: bool = False,
        route: _Route | None = None,
    ) -> _T:
        """``caller``: a request on behalf of the caller, which declares the caller's
        capabilities at 2026-07-28 (`mcp_capabilities`), not the connection's.
        ``route``: the connection it goes on (None: the shared one)."""
        in_flight = route.in_flight if route is not None else self._in_flight
        mark_broken = route.mark_broken if route is not None else self._mark_broken
        with mcp_capabilities.declaring(mcp_capabilities.of(client_input) if caller else None):
            return await mcp_requests.run(
                self.name,
                what,
                send,
                headers=headers,
                log_sink=log,
                timeout_s=timeout_s,
                mark_broken=mark_broken,
                client_input=client_input,
                in_flight=in_flight,
            )
