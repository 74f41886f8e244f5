"""The supervised connection to one upstream MCP server (Streamable HTTP or stdio), and
the route a request takes: that shared connection, or a calling session's own upstream
session.

The SDK's `Client` opens its task groups in the task that enters it, and a transport
failure cancels that task. So each upstream is entered inside its own supervisor task
(started on the app's task group); requests only *use* the connected client. The
supervisor reconnects with backoff after a failure and tells the catalog, so the lists
are re-read after every reconnect, and whenever the upstream says they changed
(`mcp_changes`); a new upstream session is subscribed again to what was subscribed on
the last (`mcp_subscriptions`).

Every request goes through `McpConnection.request` (`mcp_requests.run`): the caller's
credential headers, log sink and client input ride along, and failures become
`UpstreamError`s. An upstream's requests for client input (elicitation, sampling,
roots) are relayed to the calling client through the operation's `InputAsk`
(`mcp_client_input.relay_input`).

A client with a session at the gateway (`gateway.operations.CallerSession`) reaches a
2025-11-25 upstream on an upstream session of its own (`mcp_caller_sessions`,
docs/decisions/0034), and a sessionless 2026-07-28 request on the one held for its
principal (docs/decisions/0043): `route` sends its requests there, and that upstream
session's requests for client input (roots too), log messages and resource updates
are that caller's. Lists, the executor's and REST calls, tasks, sessionless
2025-11-25 requests and 2026-07-28 upstreams (sessionless themselves) use the shared
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

from gateway.config import McpHttpUpstream, McpStdioUpstream
from gateway.errors import UpstreamError, UpstreamUnavailable
from gateway.operations import CallerSession, ClientInput, LogSink
from gateway.upstreams import mcp_capabilities, mcp_client_input, mcp_requests
from gateway.upstreams.base import Reconnected, ResourceUpdated, UpstreamStatus
from gateway.upstreams.mcp_caller_sessions import CallerConnection, CallerSessions, SessionSlots
from gateway.upstreams.mcp_changes import ChangeWatcher
from gateway.upstreams.mcp_in_flight import InFlight
from gateway.upstreams.mcp_lean_call import is_sessionless
from gateway.upstreams.mcp_requests import describe as _describe
from gateway.upstreams.mcp_stdio import StdioStarts, stdio_parameters

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 30.0
_T = TypeVar("_T")
# Upstream sessions for calling sessions when the app gives no shared bound (tests).
_DEFAULT_SLOTS = 100


@dataclass(frozen=True)
class Route:
    """The connection a request goes on: the shared one, or a calling session's own."""

    client: Client
    in_flight: InFlight
    mark_broken: Callable[[BaseException], None]
    own: CallerConnection | None = None


# Told of each new upstream session: the shared connection's after a reconnect, and a
# calling session's own when it opens.
Resubscribe = Callable[[Route], Awaitable[None]]


class McpConnection:
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
        # Where a stdio upstream's process comes from (one started ahead, or a new one).
        self._stdio = stdio or StdioStarts()
        self.config = config
        self._static_headers = static_headers
        self._stdio_env = stdio_env or {}
        self._connect_timeout_s = connect_timeout_s
        self._on_reconnect: Reconnected | None = None
        self._on_updated: ResourceUpdated | None = None
        self._resubscribe: Resubscribe | None = None
        self._client: Client | None = None
        self._broken = anyio.Event()
        self._last_error: str | None = "not connected yet"
        self._scope: anyio.CancelScope | None = None
        self.changes = ChangeWatcher(config.name)
        # Requests in flight, to attribute an upstream's request that names no caller.
        self._in_flight = InFlight()
        self._started = False
        self.connections = 0
        self.callers = CallerSessions(
            self.name,
            self._caller_client,
            slots or SessionSlots(_DEFAULT_SLOTS),
            open_timeout_s=config.timeout_s,
        )

    @property
    def client(self) -> Client | None:
        """The shared connection's client, None while it is not connected."""
        return self._client

    @property
    def status(self) -> UpstreamStatus:
        return UpstreamStatus(connected=self._client is not None, detail=self._last_error)

    async def start(
        self,
        task_group: anyio.abc.TaskGroup,
        on_reconnect: Reconnected,
        on_updated: ResourceUpdated | None,
        resubscribe: Resubscribe,
    ) -> None:
        """Returns after the first connection attempt, whether it succeeded or not."""
        self._on_reconnect = on_reconnect
        self._on_updated = on_updated
        self._resubscribe = resubscribe
        self.changes.start(task_group, on_reconnect, on_updated)
        self.callers.start(task_group)
        await task_group.start(self._supervise)

    def close(self) -> None:
        self.callers.close_all()
        if self._scope is not None:
            self._scope.cancel()

    # --- the clients -------------------------------------------------------------------

    def _make_client(self) -> Client:
        """The shared connection: it declares everything the gateway can relay."""
        elicit, sample, roots = mcp_client_input.relay_input(self.name, self._in_flight)
        return self._client_of(
            self._transport(shared=True),
            message_handler=self.changes.on_message,
            elicit=elicit,
            sample=sample,
            roots=roots,
        )

    def _caller_client(self, own: CallerConnection, capabilities: dict[str, Any]) -> Client:
        """A caller's own upstream session (`mcp_caller_sessions`): the handshake
        declares what the caller declared that the gateway relays, and roots are
        relayed on it (they are this caller's). A log message it sends outside any
        request goes to the calling session's own stream, or else (a principal's,
        or a session that set no level) to the one request in flight on it."""
        elicit, sample, roots = mcp_client_input.relay_input(self.name, own.in_flight, shared=False)

        def outside_logs() -> LogSink | None:
            return own.logs() or own.in_flight.sole_log()

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ResourceUpdatedNotification):
                uri = str(message.params.uri)
                if uri in own.subscribed and self._on_updated is not None:
                    await self._on_updated(self.name, uri, own.session_id)
            else:  # a list change: the catalog re-reads the (shared) lists
                await self.changes.on_message(message)

        return self._client_of(
            self._transport(shared=False),
            message_handler=on_message,
            elicit=elicit if "elicitation" in capabilities else None,
            sample=sample if "sampling" in capabilities else None,
            roots=roots if "roots" in capabilities else None,
            mode="legacy",
            logs=mcp_requests.relay_log(self.name, outside_logs),
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
        logs: Callable[[types.LoggingMessageNotificationParams], Awaitable[None]] | None = None,
    ) -> Client:
        # cache=None: the gateway diffs fresh tool lists; a cached list would hide changes.
        # A callback left out is a capability not declared.
        return Client(
            transport,
            cache=None,
            read_timeout_seconds=self.config.timeout_s,
            logging_callback=logs or mcp_requests.relay_log(self.name),
            message_handler=message_handler,
            elicitation_callback=elicit,
            sampling_callback=sample,
            list_roots_callback=roots,
            mode=mode,
        )

    def _transport(self, *, shared: bool) -> Any:
        """``shared``: for the shared connection, which may take a process started ahead."""
        config = self.config
        if isinstance(config, McpStdioUpstream):
            transport = self._stdio.transport(
                stdio_parameters(config, self._stdio_env), ahead_of=self.name if shared else None
            )
        else:
            http = httpx2.AsyncClient(
                headers={**config.headers, **self._static_headers},
                # The per-call limit is enforced above (fail_after, read_timeout_seconds).
                # A transport read timeout would instead tear down the whole connection,
                # failing every other call on it, so it is kept well above that limit
                # (and above a longer call's own: `mcp_requests.apply_call_headers`).
                timeout=httpx2.Timeout(config.timeout_s * 2 + 30, connect=self._connect_timeout_s),
                event_hooks={"request": [mcp_requests.apply_call_headers]},
                follow_redirects=False,
            )
            transport = mcp_requests.http_transport(config.url, http)
        return transport

    # --- supervision -------------------------------------------------------------------

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
            if self._resubscribe is not None:  # a new upstream session: subscribe again
                await self._resubscribe(self.shared(client))
        self._report_started(task_status)
        async with anyio.create_task_group() as watching:
            if is_sessionless(client.protocol_version):
                watching.start_soon(self.changes.listen, client)
            await self._broken.wait()
            watching.cancel_scope.cancel()

    async def connected(self) -> Client:
        """The shared connection's client; `UpstreamUnavailable` while it is down."""
        client = self._client
        if client is None:
            raise UpstreamUnavailable(
                f"upstream {self.name} is not connected ({self._last_error or 'reconnecting'})"
            )
        return client

    def _mark_broken(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        self._broken.set()

    # --- routes ------------------------------------------------------------------------

    def shared(self, client: Client) -> Route:
        return Route(client, self._in_flight, self._mark_broken)

    async def route(self, session: CallerSession | None) -> Route:
        """Where a request on behalf of a caller goes: the caller's own upstream session
        (a calling session's, or its principal's) when the upstream speaks 2025-11-25
        (opened at its first request), else the shared connection."""
        client = await self.connected()
        if session is None or is_sessionless(client.protocol_version):
            return self.shared(client)
        opening = self.callers.existing(session.id) is None
        own = await self.callers.connection(session)
        assert own.client is not None
        route = Route(own.client, own.in_flight, own.mark_broken, own)
        if session.for_principal:
            # What the upstream asks there while none of the principal's requests is in
            # flight: refused, and audited under this, its latest request.
            own.in_flight.standalone = session.outside() if session.outside else None
        if opening:
            # What the session set up before it had this upstream session, or on the
            # last one (broken): its level, and its subscriptions here.
            sink = session.logs()
            if sink is not None:
                await self.set_log_level(route, sink.level)
            if self._resubscribe is not None:
                await self._resubscribe(route)
        return route

    async def set_log_level(self, route: Route, level: str) -> None:
        """``logging/setLevel`` of a calling session, passed on to its own upstream
        session (when the upstream logs at all); a failure is logged, not the caller's."""
        client = route.client
        if client.server_capabilities.logging is None:
            return
        try:
            await self.request(
                "logging/setLevel",
                lambda: client.set_logging_level(level),  # type: ignore[arg-type]
                headers={},
                log=None,
                timeout_s=self.config.timeout_s,
                route=route,
            )
        except UpstreamError as exc:
            log.info("upstream %s: log level not set: %s", self.name, exc.message)

    async def session_log_level(self, session_id: str, level: str) -> None:
        """A calling session set its log level: its upstream session here (if any) too."""
        own = self.callers.existing(session_id)
        if own is not None and own.client is not None:
            await self.set_log_level(Route(own.client, own.in_flight, own.mark_broken, own), level)

    async def session_roots_changed(self, session_id: str, client_input: ClientInput) -> None:
        """The calling session's client said its roots changed: its upstream session
        here (if any, and if it declared roots) is told, so the upstream asks again —
        outside any request, so through ``client_input`` (the session's own stream,
        under policy) while none of its requests is in flight. A failure is logged,
        not the caller's (a notification has no answer)."""
        own = self.callers.existing(session_id)
        if own is None or own.client is None or "roots" not in own.capabilities:
            return
        own.in_flight.standalone = client_input
        try:
            with anyio.fail_after(self.config.timeout_s):
                await own.client.session.send_notification(types.RootsListChangedNotification())
        except Exception as exc:
            log.info("upstream %s: roots change not passed on: %s", self.name, _describe(exc))

    def end_session(self, session_id: str) -> None:
        """The calling session ended: its upstream session (if any) is closed."""
        self.callers.end(session_id)

    async def request(
        self,
        what: str,
        send: Callable[[], Awaitable[_T]],
        *,
        headers: dict[str, str],
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,
        caller: bool = False,
        route: Route | None = None,
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
