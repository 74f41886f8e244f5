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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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
from gateway.types import ClientInput, LogSink, ProgressCallback, ToolResult
from gateway.upstreams import mcp_capabilities, mcp_offerings, mcp_requests
from gateway.upstreams.base import Reconnected, ResourceUpdated, UpstreamStatus
from gateway.upstreams.definitions import UpstreamTool
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


class McpUpstream:
    def __init__(
        self,
        config: McpHttpUpstream | McpStdioUpstream,
        *,
        static_headers: dict[str, str],
        stdio_env: dict[str, str] | None = None,
        connect_timeout_s: float,
    ) -> None:
        self.name = config.name
        self._config = config
        self._static_headers = static_headers
        self._stdio_env = stdio_env or {}
        self._connect_timeout_s = connect_timeout_s
        self._on_reconnect: Reconnected | None = None
        self._client: Client | None = None
        self._broken = anyio.Event()
        self._last_error: str | None = "not connected yet"
        self._scope: anyio.CancelScope | None = None
        self._changes = ChangeWatcher(config.name)
        # Subscribers per upstream resource URI (the upstream is subscribed once).
        self._subscribed: dict[str, int] = {}
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
        self._changes.start(task_group, on_reconnect, on_updated)
        await task_group.start(self._supervise)

    async def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        if self._lean is not None:
            await self._lean.aclose()

    # --- connection supervision ------------------------------------------------------

    def _make_client(self) -> Client:
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
        # cache=None: the gateway diffs fresh tool lists; a cached list would hide changes.
        elicit, sample, roots = mcp_requests.relay_input(self.name, self._in_flight)
        return Client(
            transport,
            cache=None,
            read_timeout_seconds=config.timeout_s,
            logging_callback=mcp_requests.relay_log(self.name),
            message_handler=self._changes.on_message,
            elicitation_callback=elicit,
            sampling_callback=sample,
            list_roots_callback=roots,
        )

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
                        await self._subscribe_upstream(client, uri, {}, self._config.timeout_s)
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
        client = await self._connected()
        meta = mcp_requests.with_log_level(client, meta, log)

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
            client,
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
        client = await self._connected()
        meta = mcp_requests.with_log_level(client, traced, log)

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
            client,
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
        client = await self._connected()
        meta = mcp_requests.with_log_level(client, traced, log)

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
            client,
            send,
            headers=headers,
            log=log,
            timeout_s=timeout_s,
            client_input=client_input,
        )
        return mcp_offerings.prompt_document(self.name, result)

    async def subscribe_resource(
        self, uri: str, *, headers: dict[str, str], timeout_s: float
    ) -> None:
        client = await self._connected()
        capabilities = client.server_capabilities.resources
        if capabilities is None or not capabilities.subscribe:
            raise UpstreamRejected(
                f"upstream {self.name} does not offer resource subscriptions",
                rpc_code=types.METHOD_NOT_FOUND,
                rpc_message=f"upstream {self.name} does not offer resource subscriptions",
            )
        count = self._subscribed.get(uri, 0)
        self._subscribed[uri] = count + 1
        if count:
            return  # already subscribed for another client
        try:
            if is_sessionless(client.protocol_version):
                self._changes.watch(frozenset(self._subscribed))
            else:
                await self._subscribe_upstream(client, uri, headers, timeout_s)
                self._changes.watch(frozenset(self._subscribed))
        except BaseException:
            await self.unsubscribe_resource(uri)
            raise

    async def _subscribe_upstream(
        self, client: Client, uri: str, headers: dict[str, str], timeout_s: float
    ) -> None:
        await self._request(
            f"a subscription to {uri}",
            lambda: client.session.send_request(
                types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)),
                types.EmptyResult,
            ),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
        )

    async def unsubscribe_resource(self, uri: str) -> None:
        count = self._subscribed.get(uri, 0)
        if count > 1:
            self._subscribed[uri] = count - 1
            return
        self._subscribed.pop(uri, None)
        self._changes.watch(frozenset(self._subscribed))
        client = self._client
        if client is None or is_sessionless(client.protocol_version):
            return
        try:
            await self._request(
                f"the end of a subscription to {uri}",
                lambda: client.session.send_request(
                    types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri)),
                    types.EmptyResult,
                ),
                headers={},
                log=None,
                timeout_s=self._config.timeout_s,
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
    ) -> dict[str, Any]:
        client = await self._connected()
        what = ref.name if isinstance(ref, types.PromptReference) else ref.uri
        result = await self._request(
            f"a completion of {what}",
            lambda: client.complete(ref, argument, context_arguments),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
        )
        return mcp_offerings.completion_document(result)

    async def _for_caller(
        self, what: str, client: Client, send: Callable[..., Any], **kwargs: Any
    ) -> Any:
        """A request on behalf of a caller through the SDK, every round of it."""

        async def on(session: Client) -> Any:
            def again(responses: Any = None, state: str | None = None) -> Any:
                return send(session, responses, state)

            return await mcp_requests.until_complete(self.name, what, await again(), again)

        return await self._request(what, lambda: on(client), caller=True, **kwargs)

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
    ) -> _T:
        """``caller``: a request on behalf of the caller, which declares the caller's
        capabilities at 2026-07-28 (`mcp_capabilities`), not the connection's."""
        with mcp_capabilities.declaring(mcp_capabilities.of(client_input) if caller else None):
            return await mcp_requests.run(
                self.name,
                what,
                send,
                headers=headers,
                log_sink=log,
                timeout_s=timeout_s,
                mark_broken=self._mark_broken,
                client_input=client_input,
                in_flight=self._in_flight,
            )
