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
