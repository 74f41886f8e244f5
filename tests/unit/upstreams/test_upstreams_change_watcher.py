"""`ChangeWatcher.honoured`: a subscription at a 2026-07-28 upstream counts as made only
once a listen stream carrying it is acknowledged (the race that lost an update between
the client's "subscribed" and the stream's re-opening). The upstream client here is an
explicit test double: only its ``listen`` acknowledgement matters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.upstreams.mcp_changes import ChangeWatcher

pytestmark = pytest.mark.anyio


class ListeningUpstream:
    """Acknowledges each listen stream only when the test says so."""

    def __init__(self) -> None:
        self.server_capabilities = SimpleNamespace(tools=None, prompts=None, resources=None)
        self.opening = anyio.Event()
        self.requested: list[list[str]] = []
        self._acknowledge = anyio.Event()
        self.refuse = False

    def acknowledge(self) -> None:
        self._acknowledge.set()

    @asynccontextmanager
    async def listen(self, **kwargs: Any) -> AsyncIterator[AsyncIterator[Any]]:
        self.requested.append(kwargs["resource_subscriptions"])
        self.opening.set()
        await self._acknowledge.wait()
        self._acknowledge = anyio.Event()
        if self.refuse:
            raise MCPError(code=-32602, message="no such resource")
        yield _forever()


async def _forever() -> AsyncIterator[Any]:
    await anyio.sleep_forever()
    yield  # pragma: no cover - makes this an async generator


async def test_a_subscription_waits_for_the_stream_that_carries_it() -> None:
    upstream = ListeningUpstream()
    watcher = ChangeWatcher("up")
    made = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.listen, cast(Client, upstream))

        async def subscribe() -> None:
            await watcher.honoured(watcher.watch(frozenset({"r://a"})), timeout_s=60)
            made.set()

        tasks.start_soon(subscribe)
        await upstream.opening.wait()
        assert upstream.requested == [["r://a"]]
        assert not made.is_set()  # the stream is not acknowledged yet
        upstream.acknowledge()
        await made.wait()
        tasks.cancel_scope.cancel()


async def test_a_refused_stream_fails_the_subscription() -> None:
    upstream = ListeningUpstream()
    upstream.refuse = True
    watcher = ChangeWatcher("up")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.listen, cast(Client, upstream))
        generation = watcher.watch(frozenset({"r://missing"}))

        async def acknowledge_when_asked() -> None:
            await upstream.opening.wait()
            upstream.acknowledge()

        tasks.start_soon(acknowledge_when_asked)
        with pytest.raises(UpstreamUnavailable, match="did not accept the subscription"):
            await watcher.honoured(generation, timeout_s=60)
        tasks.cancel_scope.cancel()


async def test_an_unanswered_stream_times_out() -> None:
    upstream = ListeningUpstream()  # never acknowledges
    watcher = ChangeWatcher("up")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.listen, cast(Client, upstream))
        generation = watcher.watch(frozenset({"r://a"}))
        await upstream.opening.wait()
        with pytest.raises(UpstreamTimeout, match="did not acknowledge"):
            await watcher.honoured(generation, timeout_s=0)
        tasks.cancel_scope.cancel()


async def test_an_unchanged_set_is_honoured_by_the_open_stream() -> None:
    upstream = ListeningUpstream()
    watcher = ChangeWatcher("up")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.listen, cast(Client, upstream))
        first = watcher.watch(frozenset({"r://a"}))
        await upstream.opening.wait()
        upstream.acknowledge()
        await watcher.honoured(first, timeout_s=60)
        # a second client of the same URI: same generation, already honoured
        assert watcher.watch(frozenset({"r://a"})) == first
        await watcher.honoured(first, timeout_s=0)
        tasks.cancel_scope.cancel()


class Stream:
    """One listen stream of `SwitchingUpstream`: acknowledged, fed and seen closed by
    the test."""

    def __init__(self, uris: list[str]) -> None:
        self.uris = uris
        self.acknowledged = anyio.Event()
        self.closed = anyio.Event()
        self.send, self.events = anyio.create_memory_object_stream[Any](10)


class SwitchingUpstream:
    """Opens a listen stream per request, each acknowledged when the test says so."""

    def __init__(self) -> None:
        self.server_capabilities = SimpleNamespace(
            tools=None, prompts=SimpleNamespace(list_changed=True), resources=None
        )
        self.streams: list[Stream] = []
        self.opened = anyio.Event()

    @asynccontextmanager
    async def listen(self, **kwargs: Any) -> AsyncIterator[AsyncIterator[Any]]:
        stream = Stream(kwargs["resource_subscriptions"])
        self.streams.append(stream)
        self.opened.set()
        self.opened = anyio.Event()
        try:
            await stream.acknowledged.wait()
            yield stream.events
        finally:
            stream.closed.set()

    async def stream(self, index: int) -> Stream:
        while len(self.streams) <= index:
            await self.opened.wait()
        return self.streams[index]


async def test_a_changed_set_keeps_the_old_stream_until_the_new_one_is_acknowledged() -> None:
    """A list change the upstream sends on the old stream while the new one opens is
    not lost (it was: the old stream was closed first)."""
    upstream = SwitchingUpstream()
    watcher = ChangeWatcher("up")
    refreshed = anyio.Event()

    async def refresh(name: str) -> None:
        refreshed.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            watcher.start(tasks, refresh)
            tasks.start_soon(watcher.listen, cast(Client, upstream))
            first = watcher.watch(frozenset({"r://a"}))
            old = await upstream.stream(0)
            old.acknowledged.set()
            await watcher.honoured(first, timeout_s=60)

            second = watcher.watch(frozenset())  # the last subscriber left
            new = await upstream.stream(1)
            assert new.uris == [] and not old.closed.is_set()
            await old.send.send("prompts list changed")  # before the new one is acknowledged
            await refreshed.wait()

            new.acknowledged.set()
            await watcher.honoured(second, timeout_s=60)
            await old.closed.wait()  # replaced once the new one was acknowledged
            assert not new.closed.is_set()
            tasks.cancel_scope.cancel()


async def test_while_streams_run_the_message_handler_passes_nothing_on() -> None:
    """The SDK hands what a listen stream carries to the stream and to the client's
    message handler: passed on from the stream alone, an update is told once."""
    upstream = SwitchingUpstream()
    watcher = ChangeWatcher("up")
    told: list[str] = []
    refreshes: list[str] = []

    async def updated(name: str, uri: str, session: str | None) -> None:
        told.append(uri)

    async def refresh(name: str) -> None:
        refreshes.append(name)

    update = types.ResourceUpdatedNotification(
        params=types.ResourceUpdatedNotificationParams(uri="r://a")
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            watcher.start(tasks, refresh, updated)
            generation = watcher.watch(frozenset({"r://a"}))
            await watcher.on_message(update)  # no stream: a 2025-11-25 connection's way
            assert told == ["r://a"]
            tasks.start_soon(watcher.listen, cast(Client, upstream))
            stream = await upstream.stream(0)
            stream.acknowledged.set()
            await watcher.honoured(generation, timeout_s=60)
            await watcher.on_message(update)  # the tee of a stream's event
            await watcher.on_message(types.PromptListChangedNotification())
            assert told == ["r://a"] and refreshes == []
            tasks.cancel_scope.cancel()
