"""Noticing that an MCP upstream's lists changed, so the catalog re-reads them.

At 2025-11-25 an upstream says so with ``notifications/*/list_changed`` on its
standalone stream (the SDK client hands them to `on_message`); at 2026-07-28 only on a
``subscriptions/listen`` stream, which `listen` keeps open while the connection lives
(re-opened with backoff after a drop). A subscription there counts as made only once
the upstream has acknowledged a listen stream that carries it (`honoured`), so that no
update between the client's subscribe and the stream's re-opening is lost. A listen
stream's subscriptions are fixed when it opens, so a change of them opens a new stream
*before* the old one is closed: the old one keeps carrying list changes and the other
subscriptions' updates until the upstream has acknowledged the new one (an update both
carry meanwhile may be passed on twice: "it changed" said twice, never lost). Either way
the catalog's refresh runs at most once at a time per upstream: a burst of
notifications makes one more refresh, not one each. The periodic refresh
(``catalog_refresh_s``) stays the backstop for an upstream that never says.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated as SdkResourceUpdated

from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.upstreams.base import Reconnected, ResourceUpdated

log = logging.getLogger(__name__)

_UPDATED = types.ResourceUpdatedNotification
_LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.PromptListChangedNotification,
    types.ResourceListChangedNotification,
)
_MAX_BACKOFF_S = 30.0


class ChangeWatcher:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: anyio.abc.TaskGroup | None = None
        self._refresh: Reconnected | None = None
        self._pending = False
        self._again = False
        self._updated: ResourceUpdated | None = None
        # The upstream URIs subscribed to; the listen streams open, by generation (at
        # most two for long: the newest, and the one it replaces until acknowledged).
        self._uris: frozenset[str] = frozenset()
        self._streams: dict[int, anyio.CancelScope] = {}
        self._listening: tuple[anyio.abc.TaskGroup, Client, dict[str, bool]] | None = None
        # Each change of `_uris` is a generation; `honoured` waits until a stream of
        # that generation (or a later one) is open, or one has failed to open.
        self._generation = 0
        self._open_generation = -1
        self._failure: tuple[int, str] | None = None
        self._progress = anyio.Event()

    def start(
        self,
        task_group: anyio.abc.TaskGroup,
        refresh: Reconnected,
        updated: ResourceUpdated | None = None,
    ) -> None:
        self._tasks = task_group
        self._refresh = refresh
        self._updated = updated

    async def on_message(self, message: Any) -> None:
        """The SDK client's message handler: a list change or a resource update. Not
        while listen streams run (2026-07-28): the SDK hands what a stream carries to
        the stream *and* to this handler, and the stream passes it on already."""
        if self._listening is not None:
            return
        if isinstance(message, _LIST_CHANGED):
            self.changed()
        elif isinstance(message, _UPDATED):
            await self._resource_updated(str(message.params.uri))

    async def _resource_updated(self, uri: str) -> None:
        if self._updated is None or uri not in self._uris:
            return  # not asked for (or no longer): nobody to tell
        try:
            await self._updated(self.name, uri, None)  # the shared connection
        except Exception:  # one subscriber's failure must not stop the stream
            log.exception("resource update of upstream %s not passed on", self.name)

    def watch(self, uris: frozenset[str]) -> int:
        """The URIs subscribed to now; a 2026-07-28 listen stream re-opens with them.
        Returns the generation to pass to `honoured`."""
        if uris == self._uris:
            return self._generation
        self._uris = uris
        self._generation += 1
        if self._listening is not None:
            self._open(self._generation, uris)
        return self._generation

    async def honoured(self, generation: int, timeout_s: float) -> None:
        """Waits until the upstream has acknowledged a listen stream carrying the URIs
        of `generation` (or of a later one). `UpstreamUnavailable` if opening it failed,
        `UpstreamTimeout` if the upstream did not answer in `timeout_s`."""
        with anyio.move_on_after(timeout_s):
            while self._open_generation < generation:
                failure = self._failure
                if failure is not None and failure[0] >= generation:
                    raise UpstreamUnavailable(
                        f"upstream {self.name} did not accept the subscription: {failure[1]}"
                    )
                progress = self._progress
                await progress.wait()
            return
        raise UpstreamTimeout(
            f"upstream {self.name} did not acknowledge the subscription in {timeout_s:g} s"
        )

    def _report(self, *, opened: int | None = None, failed: tuple[int, str] | None = None) -> None:
        if opened is not None:
            self._open_generation = max(self._open_generation, opened)
        if failed is not None:
            self._failure = failed
        self._progress.set()
        self._progress = anyio.Event()

    def changed(self) -> None:
        if self._tasks is None or self._refresh is None:
            return
        if self._pending:
            self._again = True
            return
        self._pending = True
        self._tasks.start_soon(self._refresh_until_quiet)

    async def _refresh_until_quiet(self) -> None:
        assert self._refresh is not None
        try:
            while True:
                self._again = False
                await self._refresh(self.name)
                if not self._again:
                    return
        finally:
            self._pending = False

    async def listen(self, client: Client) -> None:
        """Keeps a ``subscriptions/listen`` stream open on a 2026-07-28 connection for
        the lists the upstream says can change and the resources subscribed to
        (a new one opened when those change). Runs until cancelled."""
        capabilities = client.server_capabilities
        wanted = {
            "tools_list_changed": bool(capabilities.tools and capabilities.tools.list_changed),
            "prompts_list_changed": bool(
                capabilities.prompts and capabilities.prompts.list_changed
            ),
            "resources_list_changed": bool(
                capabilities.resources and capabilities.resources.list_changed
            ),
        }
        try:
            async with anyio.create_task_group() as streams:
                self._listening = (streams, client, wanted)
                self._open(self._generation, self._uris)
                await anyio.sleep_forever()
        finally:
            self._listening = None
            self._streams.clear()

    def _open(self, generation: int, uris: frozenset[str]) -> None:
        assert self._listening is not None
        streams = self._listening[0]
        scope = anyio.CancelScope()
        self._streams[generation] = scope
        streams.start_soon(self._stream, generation, uris, scope)

    async def _stream(
        self, generation: int, uris: frozenset[str], scope: anyio.CancelScope
    ) -> None:
        """The stream of one generation: open until a newer one is acknowledged;
        re-opened with backoff after a drop while it is the newest."""
        assert self._listening is not None
        _, client, wanted = self._listening
        backoff = 1.0
        with scope:
            while True:
                if not any(wanted.values()) and not uris:
                    self._acknowledged(generation)  # nothing to listen for is honoured
                    await anyio.sleep_forever()
                try:
                    async with client.listen(
                        **wanted, resource_subscriptions=sorted(uris)
                    ) as subscription:
                        self._acknowledged(generation)
                        backoff = 1.0
                        async for event in subscription:
                            if isinstance(event, SdkResourceUpdated):
                                await self._resource_updated(event.uri)
                            else:
                                self.changed()
                except (ListenNotSupportedError, MCPError, SubscriptionLost, TimeoutError) as exc:
                    log.info("upstream %s: change stream ended: %s", self.name, exc)
                    self._report(failed=(generation, str(exc)))
                if generation != self._generation:
                    break  # a newer stream is there, or on its way
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        if self._streams.get(generation) is scope:
            del self._streams[generation]

    def _acknowledged(self, generation: int) -> None:
        """The upstream acknowledged ``generation``'s stream: the older ones go."""
        self._report(opened=generation)
        for older in [g for g in self._streams if g < generation]:
            self._streams.pop(older).cancel()
