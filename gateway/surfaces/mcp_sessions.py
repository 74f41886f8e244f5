"""Sessions (``Mcp-Session-Id``) for 2025-11-25 clients, beside the sessionless default
(docs/mcp.md, "Sessions"; docs/decisions/0018).

Two of the SDK's transports serve the same `Server`: a stateless one (every 2026-07-28
request, and 2025-11-25 requests when sessions are off) and a stateful one, which a
2025-11-25 ``initialize`` opens a session on (``mcp.sessions.enabled``) and which
serves every later request carrying that session's id. The SDK keeps the sessions:
it mints the ids, bounds their number (``max_sessions``: an initialize beyond it is
503) and closes idle ones (``idle_timeout_s``: then 404, and the client opens a new
one). The gateway binds each session to who opened it and where: the SDK refuses a
session's id presented by anyone else as if it did not exist (404), comparing the
owner this module sets on each request — the caller's `Identity` (issuer and
canonical subject) and the endpoint's path, so a session opened on `/mcp/a` is not
usable on `/mcp` or `/mcp/b`.

What the gateway keeps per session (`LiveSession`), in this process only: its owner,
its ``logging/setLevel``, and the SDK's session object once a request of it reached a
handler (to send it ``notifications/*/list_changed`` on its standalone stream). It is
forgotten when the session ends: a DELETE, a 404 for its id, or as long without a
request in flight as the SDK's idle timeout (the SDK tells the book when it discards
a session, `_EndingSessionManager`). Its end closes what the gateway holds for it
elsewhere (`SessionBook.on_end`): its subscriptions, and the upstream sessions of its
own (`CallerSession`, docs/decisions/0034). Sessions do not move between processes:
with several replicas, requests of one session must reach the replica that opened it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Message, Receive, Scope, Send

from gateway.config import McpSessionsConfig
from gateway.operations import LOG_LEVELS, CallerSession, LogSink
from gateway.types import Identity, Principal

log = logging.getLogger(__name__)

# Where a request served by the stateful transport carries its session id for the
# handlers (request.state): only such a request is of a session. A session id header on
# any other request (a 2026-07-28 one, say) names nothing.
SESSION_STATE_KEY = "mcp_session_id"

# ``notifications/*/list_changed`` of each list a catalog change names.
_NOTIFY = {
    "tools": "send_tool_list_changed",
    "prompts": "send_prompt_list_changed",
    "resources": "send_resource_list_changed",
}


@dataclass
class LiveSession:
    identity: Identity
    path: str
    upstream: str | None  # the viewed upstream (`/mcp/{upstream}`), None for `/mcp`
    session: ServerSession | None = None
    log_level: str | None = None
    in_flight: int = 0
    idle_since: float = 0.0


def _standalone_logs(live: LiveSession) -> Callable[[], LogSink | None]:
    """The session's own stream for log messages its upstream sessions send outside any
    request, at the level it set (`logging/setLevel`) when one arrives."""

    def now() -> LogSink | None:
        server_session, level = live.session, live.log_level
        if server_session is None or level not in LOG_LEVELS:
            return None

        async def send(level: str, data: Any, logger: str | None) -> None:
            await server_session.send_log_message(level, data, logger)  # type: ignore[arg-type]

        return LogSink(str(level), send)

    return now


class SessionBook:
    """What the gateway keeps per live session, read and written by the MCP handlers."""

    def __init__(self, idle_timeout_s: float) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._live: dict[str, LiveSession] = {}
        self._end_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._ending: set[asyncio.Task[None]] = set()

    def on_end(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """``listener(session id)`` once a session is forgotten (its subscriptions end)."""
        self._end_listeners.append(listener)

    def _tell_ended(self, session_id: str) -> None:
        for listener in self._end_listeners:
            task = asyncio.get_running_loop().create_task(listener(session_id))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    def get(self, session_id: str | None) -> LiveSession | None:
        return self._live.get(session_id) if session_id else None

    def caller(self, session_id: str | None, capabilities: dict[str, Any]) -> CallerSession | None:
        """The `CallerSession` of a request of a live session (its upstream sessions of
        its own declare ``capabilities``: what the client declared that the gateway
        relays), None for a sessionless request."""
        if session_id is None or session_id not in self._live:
            return None
        return CallerSession(
            session_id,
            capabilities,
            logs=_standalone_logs(self._live[session_id]),
            alive=lambda: session_id in self._live,
        )

    def opened(self, session_id: str, live: LiveSession) -> None:
        self._forget_idle()
        self._live[session_id] = live

    def ended(self, session_id: str) -> None:
        if self._live.pop(session_id, None) is not None:
            self._tell_ended(session_id)

    def _forget_idle(self) -> None:
        """Drops sessions the SDK has closed for idleness: none of their requests in
        flight for longer than the idle timeout (an open GET stream is in flight)."""
        limit = time.monotonic() - self._idle_timeout_s
        for session_id in [
            sid for sid, s in self._live.items() if s.in_flight == 0 and s.idle_since < limit
        ]:
            del self._live[session_id]
            self._tell_ended(session_id)

    def attach(self, session_id: str | None, session: ServerSession) -> LiveSession | None:
        """The session a handler's request belongs to (its SDK object remembered for
        notifications); None for a sessionless request."""
        live = self.get(session_id)
        if live is not None:
            live.session = session
        return live

    async def lists_changed(self, upstream: str, lists: frozenset[str]) -> None:
        """Tells every session that sees ``upstream`` that these lists changed (on its
        standalone stream; the SDK drops it when the client has none open). The
        notification says nothing but "ask again", so it goes to every such session:
        what each may see is decided when it asks."""
        for live in list(self._live.values()):
            if live.session is None or live.upstream not in (None, upstream):
                continue
            for name in sorted(lists):
                try:
                    await getattr(live.session, _NOTIFY[name])()
                except Exception:  # a closed session: it is forgotten on its next 404
                    log.debug("list change not sent to a session", exc_info=True)

    def __len__(self) -> int:
        return len(self._live)


class Sessions:
    """The two transports of the MCP endpoints."""

    def __init__(
        self,
        server: Server[Any],
        config: McpSessionsConfig,
        book: SessionBook,
        *,
        security: TransportSecuritySettings,
        max_body_bytes: int,
    ) -> None:
        self._book = book
        # SSE (not JSON) answers, so progress and log notifications reach the client.
        self.stateless = StreamableHTTPSessionManager(
            app=server,
            stateless=True,
            json_response=False,
            security_settings=security,
            max_request_body_size=max_body_bytes,
        )
        self.stateful = (
            _EndingSessionManager(
                book,
                app=server,
                stateless=False,
                json_response=False,
                security_settings=security,
                max_request_body_size=max_body_bytes,
                session_idle_timeout=config.idle_timeout_s,
                max_sessions=config.max_sessions,
            )
            if config.enabled
            else None
        )

    @property
    def enabled(self) -> bool:
        return self.stateful is not None

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.stateless.run())
            if self.stateful is not None:
                await stack.enter_async_context(self.stateful.run())
            yield

    # --- serving ---------------------------------------------------------------------

    async def serve_stateless(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stateless.handle_request(scope, receive, send)

    async def serve_stateful(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        principal: Principal,
        upstream: str | None,
    ) -> None:
        """A request opening a session (no id yet) or of one; the SDK checks the owner."""
        assert self.stateful is not None
        path: str = scope["path"]
        scope["user"] = _owner(principal.identity, path)
        session_id = _header(scope, MCP_SESSION_ID_HEADER)
        # The SDK refuses a session's request from anyone but its owner before any
        # handler runs: a handler that sees this id sees its owner's request.
        scope.setdefault("state", {})[SESSION_STATE_KEY] = session_id
        live = self._book.get(session_id)
        if live is not None and (live.identity != principal.identity or live.path != path):
            live = None  # not the owner's request: the SDK answers 404; nothing to track
        if live is not None:
            live.in_flight += 1
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                opened = _response_header(message, MCP_SESSION_ID_HEADER)
                if session_id is None and opened is not None and status < 400:
                    # Known before the client can read its id: its next request may
                    # come before this one's handler has returned.
                    opening = LiveSession(
                        principal.identity, path, upstream, idle_since=time.monotonic()
                    )
                    self._book.opened(opened, opening)
            await send(message)

        try:
            await self.stateful.handle_request(scope, receive, watch)
        finally:
            if live is not None:
                live.in_flight -= 1
                live.idle_since = time.monotonic()
            ended = status == 404 or (
                scope["method"] == "DELETE" and status is not None and status < 300
            )
            if live is not None and session_id is not None and ended:
                self._book.ended(session_id)


class _EndingSessionManager(StreamableHTTPSessionManager):
    """The SDK's stateful manager, telling the book when it discards a session however
    it ended (a DELETE, its idle timeout, a crash), so what the gateway holds for the
    session is released at once, not at the next ``initialize``."""

    def __init__(self, book: SessionBook, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._book = book

    async def _discard_session(self, session_id: str, transport: Any) -> None:
        # The SDK's one place every session ends (mcp 2.3, a private method).
        self._book.ended(session_id)
        await super()._discard_session(session_id, transport)


def _owner(identity: Identity, path: str) -> AuthenticatedUser:
    """Who the SDK binds a session to: the identity and the endpoint. Never the agent's
    token: the SDK compares only the client id, issuer and subject."""
    token = AccessToken(
        token="",
        client_id=f"{identity.key}\n{path}",
        scopes=[],
        subject=identity.sub,
        claims={"iss": identity.iss},
    )
    return AuthenticatedUser(token)


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope["headers"]:
        if key == wanted:
            return str(value.decode("latin-1"))
    return None


def _response_header(message: Message, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in message.get("headers", []):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None
