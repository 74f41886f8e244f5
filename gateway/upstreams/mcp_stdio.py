"""How a stdio upstream's process is started: by the SDK's `stdio_client`, always, and
for some upstreams ahead of the gateway's own start (docs/decisions/0037).

A stdio upstream's process spends most of its start importing its MCP SDK; the
gateway meanwhile imports its own modules and builds its components, and used to
start the process only after both. `StdioStarts.start_ahead` enters the SDK's
`stdio_client` early, in a task of its own that holds the transport open; the
connection's first attempt then *takes* that transport (`StdioStarts.transport`)
instead of starting the process again. Everything else is as for any stdio upstream:
the SDK spawns the process (its own session), pipes its messages and, when the
transport is left, ends it (stdin closed, then the process group killed); a gateway
killed with SIGKILL closes the process's stdin by dying, which ends it.

A process started ahead is taken once, by the connection of the upstream it was
started for, with the same parameters; a reconnect starts a new one, as before.
`StdioStarts.release` ends any that no connection took (a start that failed first).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.config import McpStdioUpstream
from gateway.errors import sole_error

if TYPE_CHECKING:
    # The SDK's name for what `stdio_client` yields; private, so for types only: a
    # rename there can break a type check here, never the import of this module.
    from mcp.client._transport import TransportStreams

log = logging.getLogger(__name__)


def stdio_parameters(config: McpStdioUpstream, stdio_env: dict[str, str]) -> StdioServerParameters:
    """How the SDK starts ``config``'s process; ``stdio_env``: what its credentials add
    to the environment (`CredentialProvider.stdio_env`)."""
    return StdioServerParameters(
        command=config.command[0],
        args=config.command[1:],
        env={**config.env, **stdio_env} or None,
        cwd=config.cwd,
    )


@dataclass
class _Held:
    """A transport entered ahead, held open by its task until released."""

    params: StdioServerParameters
    streams: TransportStreams
    released: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)
    taken: bool = False


class StdioStarts:
    """The stdio transports of one gateway: the SDK's, some of them started ahead."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    async def start_ahead(
        self, task_group: anyio.abc.TaskGroup, name: str, params: StdioServerParameters
    ) -> None:
        """Starts upstream ``name``'s process now, held in ``task_group`` until its
        connection takes it or `release` is called; returns once it is spawned. A process
        that cannot be spawned is left to the connection, which reports it as always."""
        try:
            await task_group.start(self._hold, name, params)
        except Exception as exc:  # the connection's attempt says what failed
            log.debug("upstream %s: not started ahead: %r", name, exc)

    async def _hold(
        self,
        name: str,
        params: StdioServerParameters,
        *,
        task_status: anyio.abc.TaskStatus[None],
    ) -> None:
        held: _Held | None = None
        try:
            async with stdio_client(params) as streams:
                held = _Held(params, streams)
                self._held[name] = held
                log.debug("upstream %s: process started ahead", name)
                task_status.started()
                await held.released.wait()
            # Leaving stdio_client ended the process, as for any stdio upstream.
        finally:
            if held is not None:
                held.ended.set()

    def transport(
        self, params: StdioServerParameters, *, ahead_of: str | None
    ) -> AbstractAsyncContextManager[TransportStreams]:
        """The transport for a connection attempt: the process started ahead for upstream
        ``ahead_of``, the first time (the upstream's shared connection asks with its
        name; a calling session's own connection with None), else a new `stdio_client`."""
        held = None if ahead_of is None else self._held.get(ahead_of)
        if held is None or held.taken:
            return stdio_client(params)
        held.taken = True
        if held.params != params:
            # Not what the connection would start: never used, ended now.
            log.warning("upstream %s: started ahead with other parameters; starting anew", ahead_of)
            held.released.set()
            return stdio_client(params)
        return self._taken(held)

    @staticmethod
    @asynccontextmanager
    async def _taken(held: _Held) -> AsyncIterator[TransportStreams]:
        try:
            yield held.streams
        finally:
            # Left as stdio_client is left: the process is ended before this returns.
            held.released.set()
            with anyio.CancelScope(shield=True):
                await held.ended.wait()

    def release(self) -> None:
        """Ends every process started ahead (the serve is over, or never began): those no
        connection took, and any a connection still holds."""
        for held in self._held.values():
            held.released.set()


@asynccontextmanager
async def started_ahead(
    upstreams: list[tuple[str, StdioServerParameters]],
) -> AsyncIterator[StdioStarts]:
    """`StdioStarts` with ``upstreams`` (name, parameters) started; every one of them is
    ended when the block is left (after their connections, on a normal stop). An error
    in the block reads as itself, not as the task group's."""
    starts = StdioStarts()
    try:
        async with anyio.create_task_group() as holding:
            try:
                for name, params in upstreams:
                    await starts.start_ahead(holding, name, params)
                yield starts
            finally:
                starts.release()
    except BaseExceptionGroup as group:
        raise sole_error(group) from None
