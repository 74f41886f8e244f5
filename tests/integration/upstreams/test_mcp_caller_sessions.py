"""`CallerSessions`: a calling session's own upstream session, opened once at first
need, closed when the session ends or the connection breaks, bounded over every
upstream by one `SessionSlots` (docs/decisions/0034).

The upstream is the test upstream server (tests/support/upstream_mcp.py), reached by
the SDK's real client in the 2025-11-25 handshake era: in process, and over stdio as
a process that fails to start."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.errors import UpstreamSessionsExhausted, UpstreamUnavailable
from gateway.operations import CallerSession
from gateway.upstreams.mcp_caller_sessions import CallerConnection, CallerSessions, SessionSlots
from tests.support.upstream_mcp import server
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio


class _Made:
    """The capabilities each upstream session was opened with."""

    def __init__(self) -> None:
        self.capabilities: list[dict[str, Any]] = []

    def __call__(self, connection: CallerConnection, capabilities: dict[str, Any]) -> Client:
        self.capabilities.append(capabilities)
        return Client(server, mode="legacy", cache=None)


@asynccontextmanager
async def _pool(slots: SessionSlots, made: Any, name: str = "up") -> AsyncIterator[CallerSessions]:
    async with anyio.create_task_group() as tasks:
        sessions = CallerSessions(name, made, slots, open_timeout_s=30)
        sessions.start(tasks)
        try:
            yield sessions
        finally:
            sessions.close_all()


async def test_one_upstream_session_per_calling_session_opened_once_and_closed_at_its_end():
    slots, made = SessionSlots(5), _Made()
    async with _pool(slots, made) as sessions:
        alice = await sessions.connection(CallerSession("a", {"roots": {}}))
        assert alice.client is not None
        assert (await alice.client.call_tool("echo", {"text": "hi"})).content
        again = await sessions.connection(CallerSession("a", {"roots": {}}))
        assert again is alice  # the session's one upstream session, not another
        bob = await sessions.connection(CallerSession("b", {}))
        assert bob is not alice
        assert made.capabilities == [{"roots": {}}, {}]  # each opened with its own
        assert slots.held == 2 and sessions.opened == 2
        sessions.end("a")
        await eventually_async(lambda: slots.held == 1, "alice's upstream session closed")
        assert sessions.closed == 1 and sessions.existing("a") is None
        assert sessions.existing("b") is bob
        sessions.end("a")  # ending twice, or a session that never had one: nothing
        sessions.end("never")
        assert slots.held == 1


async def test_the_cap_refuses_cleanly_when_none_is_idle_and_frees_at_an_end():
    slots, made = SessionSlots(1), _Made()
    async with _pool(slots, made, "one") as first:
        async with _pool(slots, made, "two") as second:
            busy = await first.connection(CallerSession("a", {}))
            flight = busy.in_flight.enter(None)  # a request of "a" in flight on it
            with pytest.raises(UpstreamSessionsExhausted) as refused:
                await second.connection(CallerSession("b", {}))
            assert refused.value.code == "upstream_sessions_exhausted"
            assert "max_upstream_sessions" in refused.value.message
            assert slots.held == 1 and len(second) == 0  # nothing half-open left
            busy.in_flight.leave(flight)
            busy.subscribed.add("test://static")  # a subscription keeps it too
            with pytest.raises(UpstreamSessionsExhausted):
                await second.connection(CallerSession("b", {}))
            first.end("a")
            await eventually_async(lambda: slots.held == 0, "the first session's closed")
            assert (await second.connection(CallerSession("b", {}))).client is not None
            assert slots.evicted == 0


async def test_at_the_cap_the_least_recently_used_idle_one_of_any_upstream_makes_room():
    slots, made = SessionSlots(2), _Made()
    async with _pool(slots, made, "one") as first:
        async with _pool(slots, made, "two") as second:
            a = await first.connection(CallerSession("a", {}))
            b = await second.connection(CallerSession("b", {}))
            assert await first.connection(CallerSession("a", {})) is a  # a used since b
            c = await first.connection(CallerSession("c", {}))  # b's, on "two", goes
            assert c.client is not None and slots.evicted == 1
            assert second.existing("b") is None and b.closing.is_set()
            assert slots.held == 2  # its slot passed on at once, never over the cap
            await eventually_async(lambda: second.closed == 1, "b's upstream session closed")
            assert slots.held == 2  # closing it did not give its slot back twice
            # b's next request opens a fresh one, making room by closing a's (now the
            # least recently used).
            fresh = await second.connection(CallerSession("b", {}))
            assert fresh is not b and fresh.client is not None
            assert first.existing("a") is None and first.existing("c") is c
            assert slots.evicted == 2 and slots.held == 2


async def test_a_broken_upstream_session_is_dropped_and_the_next_request_opens_another():
    slots, made = SessionSlots(5), _Made()
    async with _pool(slots, made) as sessions:
        broken = await sessions.connection(CallerSession("a", {}))
        broken.mark_broken(RuntimeError("the transport failed"))
        await eventually_async(lambda: slots.held == 0, "the broken one closed")
        fresh = await sessions.connection(CallerSession("a", {}))
        assert fresh is not broken and fresh.client is not None
        assert sessions.opened == 2


async def test_an_upstream_session_that_cannot_open_is_unavailable_and_frees_its_slot():
    slots = SessionSlots(5)

    def exits_at_once(connection: CallerConnection, capabilities: dict[str, Any]) -> Client:
        params = StdioServerParameters(command=sys.executable, args=["-c", "pass"])
        return Client(stdio_client(params), mode="legacy", cache=None)

    async with _pool(slots, exits_at_once) as sessions:
        with pytest.raises(UpstreamUnavailable) as failed:
            await sessions.connection(CallerSession("a", {}))
        assert "no session for this client could be opened" in failed.value.message
        await eventually_async(lambda: slots.held == 0, "its slot given back")
        assert sessions.existing("a") is None


async def test_a_session_that_has_ended_opens_no_upstream_session():
    slots, made = SessionSlots(5), _Made()
    async with _pool(slots, made) as sessions:
        with pytest.raises(UpstreamUnavailable, match="the calling session has ended"):
            await sessions.connection(CallerSession("a", {}, alive=lambda: False))
        assert made.capabilities == [] and slots.held == 0 and len(sessions) == 0


async def test_a_session_that_ends_while_its_upstream_session_opens_leaves_none_behind():
    """A request in flight when its session ended (DELETE, idle expiry) must not leave
    an upstream session that nothing would close: it is closed, its slot given back."""
    slots, made = SessionSlots(5), _Made()
    answers = iter([True])  # alive when the request starts; ended once it has opened

    async with _pool(slots, made) as sessions:
        with pytest.raises(UpstreamUnavailable, match="the calling session has ended"):
            await sessions.connection(CallerSession("a", {}, alive=lambda: next(answers, False)))
        assert sessions.opened == 1  # it did open meanwhile
        await eventually_async(lambda: slots.held == 0, "the late upstream session closed")
        assert sessions.existing("a") is None and sessions.closed == 1
