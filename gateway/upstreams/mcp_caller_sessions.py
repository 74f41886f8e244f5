"""Upstream sessions of their own for calling sessions (docs/decisions/0034) and for
the principals of sessionless requests (docs/decisions/0043).

A 2025-11-25 upstream keeps state per session: the client's capabilities (fixed at
its ``initialize``), its roots (server-everything asks once per session and keeps the
answer), its resource subscriptions, whatever a tool toggles for "this client". The
gateway's connection to an upstream is one such session shared by every caller, so
none of that can belong to one client there (roots are refused on it:
`mcp_client_input.relay_input`). A client with a session at the gateway
(``Mcp-Session-Id``: `gateway.operations.CallerSession`) is therefore given an upstream
session of its own on each 2025-11-25 upstream it reaches: opened at its first
request routed there, with the caller's capabilities in the handshake, and closed
when the calling session ends (a DELETE, its idle expiry, the gateway's shutdown).
Whatever that upstream session asks (roots included) can only be that client's.

A sessionless 2026-07-28 request has no calling session: it is given the upstream
session held for its principal (`CallerSession.for_principal`: its identity and
delegation chain, the endpoint, and the relayable capabilities it declared). Nothing
ends such a caller, so that upstream session is closed once it has been idle (no
request in flight or being routed to it, no subscription on it) for
`SessionSlots.principal_idle_s`, by a loop that sleeps until the next one is due and
is woken when one becomes idle.

Each upstream session is entered in a task of its own on the app's task group (the
SDK's `Client` must be entered and left in one task, and a transport failure cancels
that task), and held there until it is closed. Bounded by `SessionSlots`: at most
``mcp.sessions.max_upstream_sessions`` per process over every upstream. At the cap the
least recently used *idle* one (open, no request in flight or being routed to it, no
subscription on it) of any calling session and upstream is closed to make room; only
when none is idle does the request fail with `UpstreamSessionsExhausted` — never sent
on the shared connection instead, whose state is not the caller's. A broken or evicted
one is dropped; the next request of its calling session opens another (the upstream
lost that session's state: its roots are asked again, its level is set again, its
subscriptions are made again by `mcp_subscriptions`; whatever a tool switched on is
gone).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from mcp import Client

from gateway.errors import UpstreamSessionsExhausted, UpstreamUnavailable
from gateway.metrics import (
    UPSTREAM_SESSIONS,
    UPSTREAM_SESSIONS_EVICTED,
    UPSTREAM_SESSIONS_REFUSED,
)
from gateway.operations import CallerSession, LogSink
from gateway.upstreams.mcp_in_flight import InFlight
from gateway.upstreams.mcp_requests import describe

log = logging.getLogger(__name__)


# Orders uses of upstream sessions (least recently used first) without a clock.
_uses = itertools.count()


class SessionSlots:
    """How many upstream sessions this process holds for callers, over every upstream,
    and the most it may (one instance shared by every MCP upstream). At the cap it
    makes room by closing the least recently used idle one of any upstream. Also how
    long one held for a principal is kept while idle (``principal_idle_s``, on
    ``clock``: seconds, injected by tests)."""

    def __init__(
        self,
        maximum: int,
        *,
        principal_idle_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.principal_idle_s = principal_idle_s
        self.clock = clock
        self.held = 0
        self.evicted = 0
        self._pools: list[CallerSessions] = []

    def serve(self, pool: CallerSessions) -> None:
        """``pool``'s idle upstream sessions may be closed to make room for others."""
        self._pools.append(pool)

    def take(self, upstream: str) -> None:
        if self.held >= self.maximum and not self._evict_one():
            UPSTREAM_SESSIONS_REFUSED.inc()
            raise UpstreamSessionsExhausted(
                f"upstream {upstream} is reached on an upstream session per calling "
                f"session, and this gateway process already holds {self.maximum} of them, "
                "none idle (mcp.sessions.max_upstream_sessions): retry once a request "
                "has ended, or end sessions (DELETE)",
                details={"max_upstream_sessions": self.maximum},
            )
        self.held += 1

    def _evict_one(self) -> bool:
        idle = [(c.last_used, c, pool) for pool in self._pools for c in pool.idle()]
        if not idle:
            return False
        _, connection, pool = min(idle, key=lambda found: found[0])
        pool.evict(connection)  # its slot given back at once: this request's
        self.evicted += 1
        UPSTREAM_SESSIONS_EVICTED.inc()
        return True

    def give_back(self, connection: CallerConnection | None = None) -> None:
        """Frees the slot ``connection`` holds (once), or one never given a connection."""
        if connection is not None:
            if not connection.holds_slot:
                return
            connection.holds_slot = False
        self.held -= 1


@dataclass(eq=False)
class CallerConnection:
    """One caller's upstream session (a calling session's, or a principal's), while it
    lives."""

    session_id: str
    # Held for a principal: closed once idle for `SessionSlots.principal_idle_s`.
    for_principal: bool = False
    # When it was last left idle (`SessionSlots.clock`).
    idle_since: float = 0.0
    # What the caller declared that the gateway relays (its handshake declares these).
    capabilities: dict[str, Any] = field(default_factory=dict)
    # The calling session's own stream for what its upstream session logs outside any
    # request (`CallerSession.logs`).
    logs: Callable[[], LogSink | None] = lambda: None
    client: Client | None = None
    # Requests in flight on it (all of this one client), for a request of the upstream
    # that names none (stdio, its standalone stream): `mcp_in_flight.InFlight`.
    in_flight: InFlight = field(default_factory=InFlight)
    # The upstream URIs subscribed to on it (its updates are this client's alone).
    subscribed: set[str] = field(default_factory=set)
    ready: anyio.Event = field(default_factory=anyio.Event)
    closing: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    error: str | None = None
    # Requests being routed to it (waiting for it to open): not idle meanwhile.
    routing: int = 0
    last_used: int = field(default_factory=lambda: next(_uses))
    holds_slot: bool = True

    @property
    def idle(self) -> bool:
        """Open, and nothing of its calling session's would notice its closing but
        the upstream's own state (which a broken one loses alike)."""
        return (
            self.client is not None
            and not self.closing.is_set()
            and self.routing == 0
            and not self.in_flight.busy
            and not self.subscribed
        )

    @property
    def held_for(self) -> str:
        """Whom it is held for, as `/metrics` labels it."""
        return "principal" if self.for_principal else "session"

    def mark_broken(self, exc: BaseException) -> None:
        """A transport failure: closed, and the next request opens another."""
        self.error = describe(exc)
        self.closing.set()


# Builds the SDK client of a calling session's upstream session: (the connection, the
# capabilities the caller declared that the gateway relays).
MakeClient = Callable[[CallerConnection, dict[str, Any]], Client]


class CallerSessions:
    """The upstream sessions of one MCP upstream, one per caller (a calling session, or
    a principal)."""

    def __init__(
        self, upstream: str, make_client: MakeClient, slots: SessionSlots, *, open_timeout_s: float
    ) -> None:
        self._upstream = upstream
        self._make_client = make_client
        self._slots = slots
        self._open_timeout_s = open_timeout_s
        self._open: dict[str, CallerConnection] = {}
        self._tasks: anyio.abc.TaskGroup | None = None
        # The loop closing principals' idle upstream sessions: woken when one becomes
        # idle, ended by `close_all`. Its cancel scope is made in the loop itself: this
        # object is also built outside any event loop (`gateway tools`), where anyio
        # cannot make one.
        self._wake = anyio.Event()
        self._expiry: anyio.CancelScope | None = None
        self._closed = False
        slots.serve(self)
        # Counters, for operators and tests: sessions opened, and closed again.
        self.opened = 0
        self.closed = 0

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._tasks = task_group
        task_group.start_soon(self._expire_idle)

    def __len__(self) -> int:
        return len(self._open)

    def existing(self, session_id: str) -> CallerConnection | None:
        """The calling session's upstream session if one is open (never opens one)."""
        connection = self._open.get(session_id)
        return connection if connection is not None and not connection.closing.is_set() else None

    async def connection(self, session: CallerSession) -> CallerConnection:
        """The calling session's upstream session, opened at its first request. Raises
        `UpstreamSessionsExhausted` at the cap, `UpstreamUnavailable` when it cannot be
        opened."""
        connection = self.existing(session.id)
        if connection is None:
            if not session.alive():
                raise UpstreamUnavailable(self._ended_message())
            connection = self._open_new(session)
        connection.last_used = next(_uses)
        connection.routing += 1
        try:
            with anyio.move_on_after(self._open_timeout_s):
                await connection.ready.wait()
        finally:
            # The caller sends on it without yielding first (in flight from then on).
            connection.routing -= 1
        if not session.alive():
            # It ended while this request waited: nothing else would close this one.
            self.end(session.id)
            raise UpstreamUnavailable(self._ended_message())
        if not connection.ready.is_set():
            connection.scope.cancel()
            raise UpstreamUnavailable(
                f"upstream {self._upstream}: no session for this client could be opened "
                f"within {self._open_timeout_s:g} s"
            )
        if connection.client is None:
            raise UpstreamUnavailable(
                f"upstream {self._upstream}: no session for this client could be opened "
                f"({connection.error or 'closed'})"
            )
        return connection

    def _ended_message(self) -> str:
        return f"upstream {self._upstream}: the calling session has ended"

    def _open_new(self, session: CallerSession) -> CallerConnection:
        if self._tasks is None:
            raise UpstreamUnavailable(f"upstream {self._upstream} is not started")
        self._slots.take(self._upstream)
        connection = CallerConnection(
            session.id,
            for_principal=session.for_principal,
            capabilities=dict(session.capabilities),
            logs=session.logs,
        )
        if session.for_principal:
            connection.in_flight.on_idle = lambda: self._left_idle(connection)
        try:
            self._tasks.start_soon(self._hold, connection, dict(session.capabilities))
        except RuntimeError:  # the task group is closing: the gateway is stopping
            self._slots.give_back(connection)  # (the gauge was not raised yet)
            raise UpstreamUnavailable(f"upstream {self._upstream} is stopping") from None
        self._open[session.id] = connection
        UPSTREAM_SESSIONS.labels(self._upstream, connection.held_for).inc()
        return connection

    async def _hold(self, connection: CallerConnection, capabilities: dict[str, Any]) -> None:
        """Enters the upstream session, keeps it until it is closed, and leaves it (the
        SDK ends a stdio upstream's process, and a Streamable HTTP session by DELETE)."""
        try:
            with connection.scope:
                async with self._make_client(connection, capabilities) as client:
                    connection.client = client
                    self.opened += 1
                    connection.ready.set()
                    if connection.for_principal:
                        self._left_idle(connection)
                    log.info(
                        "upstream %s: a session of its own opened for a %s (protocol %s)",
                        self._upstream,
                        "principal" if connection.for_principal else "calling session",
                        client.protocol_version,
                    )
                    await connection.closing.wait()
        except Exception as exc:
            connection.error = describe(exc)
            log.info("upstream %s: a calling session's session ended: %s", self._upstream, exc)
        finally:
            if connection.client is not None:
                self.closed += 1
            connection.client = None
            connection.closing.set()
            connection.ready.set()
            if self._open.get(connection.session_id) is connection:
                del self._open[connection.session_id]
            self._release(connection)

    def idle(self) -> Iterator[CallerConnection]:
        """Its upstream sessions that may be closed to make room (`SessionSlots`)."""
        return (c for c in self._open.values() if c.idle)

    def evict(self, connection: CallerConnection) -> None:
        """Closes an idle upstream session to make room; its caller's next request here
        opens another."""
        self._drop(connection, "closed to make room for another (max_upstream_sessions)")
        log.info(
            "upstream %s: an idle caller's session closed to make room "
            "(mcp.sessions.max_upstream_sessions)",
            self._upstream,
        )

    def expire_idle(self) -> float | None:
        """Closes the upstream sessions held for principals that have been idle for
        `SessionSlots.principal_idle_s`; returns the seconds until the next idle one is
        due (None: none is idle)."""
        now, keep = self._slots.clock(), self._slots.principal_idle_s
        due: float | None = None
        for connection in list(self._open.values()):
            if not connection.for_principal or not connection.idle:
                continue
            left = connection.idle_since + keep - now
            if left > 0:
                due = left if due is None else min(due, left)
                continue
            self._drop(connection, f"closed after {keep:g} s idle (principal_idle_timeout_s)")
            log.info(
                "upstream %s: a principal's session closed after %g s idle", self._upstream, keep
            )
        return due

    def _left_idle(self, connection: CallerConnection) -> None:
        """A principal's upstream session has nothing in flight any more: its idle time
        starts now, and the expiry loop looks again."""
        connection.idle_since = self._slots.clock()
        self._wake.set()

    async def _expire_idle(self) -> None:
        """Sleeps until the next principal's upstream session is due to close, or until
        one becomes idle (nothing to look at while none is: no polling)."""
        if self._closed:
            return
        self._expiry = anyio.CancelScope()
        with self._expiry:
            while True:
                self._wake = anyio.Event()
                due = self.expire_idle()
                with anyio.move_on_after(math.inf if due is None else due):
                    await self._wake.wait()

    def _drop(self, connection: CallerConnection, why: str) -> None:
        if self._open.get(connection.session_id) is connection:
            del self._open[connection.session_id]
        connection.error = why
        connection.closing.set()
        self._release(connection)

    def _release(self, connection: CallerConnection) -> None:
        """Its slot, and its place in the gauge, given back once (when it is closed, or
        as soon as it is evicted: still closing, it no longer counts)."""
        if connection.holds_slot:
            UPSTREAM_SESSIONS.labels(self._upstream, connection.held_for).dec()
            self._slots.give_back(connection)

    def end(self, session_id: str) -> None:
        """The calling session ended: its upstream session is closed."""
        connection = self._open.pop(session_id, None)
        if connection is not None:
            connection.closing.set()

    def close_all(self) -> None:
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        for connection in list(self._open.values()):
            connection.closing.set()
        self._open.clear()
