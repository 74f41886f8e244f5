"""What a 2025-11-25 upstream's task waits for, collected on a ``tasks/result`` the
gateway holds in the background, for a 2026-07-28 owner (docs/decisions/0044;
docs/mcp.md, "Tasks").

A 2025-11-25 upstream sends its task's requests for input (elicitation, sampling,
roots) only as server-to-client requests on the stream of a ``tasks/result``, and takes
the answers as their JSON-RPC responses there. A 2026-07-28 client cannot hold such a
stream: it polls ``tasks/get`` and answers with ``tasks/update``. So when such an
owner's ``tasks/get`` finds the task in ``input_required``, the gateway holds that
``tasks/result`` itself (`TaskStreams.start`), on the upstream connection the task
lives on, under a `HeldStream`: a `ClientChannel` that asks no client. Each request
the upstream sends there is decided by the one relay first (`gateway.relays`: the
capability the owner declared on the ``tasks/get`` that started the stream, policy
with the request's method as the action, ``relay.decision`` durable), and only then
waits in the stream, under a key of the gateway's making, shown to the owner by its
``tasks/get`` until its ``tasks/update`` answers it (`answer`). The relay records the
answer (``relay.answer``) as for any relayed request, and the upstream gets it as the
response to its request. A refused request never waits here: the upstream gets the
refusal as the error answering its request, and the owner never sees it.

Bounded: one stream per task, at most `MAX_STREAMS` in a process, `MAX_PER_UPSTREAM`
at one upstream (each holds one of its connection's HTTP connections, which every other
call there needs) and `MAX_PER_OWNER` for one owner (no principal takes every stream of
an upstream); past a bound the task is shown ``working``, to poll again. A request waits at
most ``mcp.input.timeout_s`` for its answer (then the upstream gets an error saying
so), and a stream with nothing waiting for as long is ended (a later ``tasks/get``
that finds the task waiting again starts another). It ends, too, when its
``tasks/result`` answers (the task ended), when the task is cancelled or found ended,
and when the upstream connection fails: whatever still waited gets an error, and the
stream is forgotten. Times are read on an injected `Clock`, and due ones acted on by
`expire`, so tests move time by hand.

What the ``tasks/result`` answered is not used: the owner's next ``tasks/get`` reads
the ended task as for any other, which records the call's outcome once
(`Passthrough._ended`). The stream lives in this process, like what a ``tasks/get``
showed (docs/decisions/0041): a ``tasks/update`` must reach it.

One stream and what waits on it is a `HeldStream` (`mcp_task_held_stream`); this module
holds them (`TaskStreams`), within the bounds above.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types

from gateway.clock import Clock
from gateway.errors import ClientInputRefused
from gateway.metrics import TASK_INPUT_STREAMS
from gateway.operations import ClientInput, Operation
from gateway.relays import Relays
from gateway.surfaces.mcp_task_held_stream import HeldStream
from gateway.surfaces.mcp_task_input import MAX_REMEMBERED, PolledChannel, for_task

# Streams one process holds at once: as many tasks as it remembers what it showed.
MAX_STREAMS = MAX_REMEMBERED
# Per upstream: each stream holds one of the shared connection's HTTP connections
# (httpx keeps at most 100), which its other calls need; a third at most is held here.
MAX_PER_UPSTREAM = 32
# Per owner (its identity): one principal's waiting tasks cannot take every stream of
# an upstream from the others'.
MAX_PER_OWNER = 8
# How long a `tasks/get` that finds the task waiting, with nothing of it held yet,
# waits for the upstream's first request (it is sent as soon as the stream opens);
# only a bound: past it the task is shown working, and the next poll shows it.
SHOW_WAIT_S = 2.0

# The upstream task's ``tasks/result``, sent with the `ClientInput` its requests go to.
Fetch = Callable[[ClientInput], Awaitable[object]]


class NoRoom(Exception):
    """No stream can be held for a task now (a bound is reached); says which."""


class TaskStreams:
    """The streams this process holds, one per task at most."""

    def __init__(
        self,
        relays: Relays,
        *,
        timeout_s: float,
        clock: Clock = time.monotonic,
        max_streams: int = MAX_STREAMS,
        max_per_upstream: int = MAX_PER_UPSTREAM,
        max_per_owner: int = MAX_PER_OWNER,
    ) -> None:
        self.relays = relays
        self.timeout_s = timeout_s
        self.clock = clock
        self.max_streams = max_streams
        self.max_per_upstream = max_per_upstream
        self.max_per_owner = max_per_owner
        self._streams: dict[str, HeldStream] = {}

    def holds(self, task_id: str) -> bool:
        return task_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    def start(
        self, task_id: str, call: Operation, polled: PolledChannel, fetch: Fetch, *, upstream: str
    ) -> HeldStream:
        """The stream of ``task_id``: the one held, or one started now (``fetch`` sends
        the ``tasks/result`` to ``upstream``), whose requests are decided and recorded
        under ``call``, the task's call, against what ``polled`` declared. Raises
        `NoRoom` when a bound is reached."""
        stream = self._streams.get(task_id)
        if stream is not None:
            return stream
        owner = call.principal.identity.key
        self._check_room(upstream, owner)
        stream = HeldStream(
            task_id,
            polled,
            upstream=upstream,
            owner=owner,
            timeout_s=self.timeout_s,
            clock=self.clock,
            on_end=self._ended,
        )
        client_input = self.relays.with_channel(call, stream).client_input
        assert client_input is not None
        # The upstream tags its requests with its own task id: the owner sees the gateway's.
        asked = for_task(client_input, task_id)
        self._streams[task_id] = stream
        TASK_INPUT_STREAMS.inc()
        # Not a task of the request that started it: the stream outlives that request.
        stream.task = asyncio.create_task(stream.run(lambda: fetch(asked)))
        return stream

    def _check_room(self, upstream: str, owner: str) -> None:
        held = self._streams.values()
        if len(self._streams) >= self.max_streams:
            raise NoRoom(f"the gateway holds the requests of {self.max_streams} tasks already")
        if sum(s.upstream == upstream for s in held) >= self.max_per_upstream:
            raise NoRoom(
                f"the gateway holds the requests of {self.max_per_upstream} tasks at "
                f"upstream {upstream} already"
            )
        if sum(s.owner == owner for s in held) >= self.max_per_owner:
            raise NoRoom(
                f"the gateway holds the requests of {self.max_per_owner} of this caller's "
                "tasks already"
            )

    async def shown(self, task_id: str, *, within: float) -> dict[str, Any]:
        """What the stream of ``task_id`` holds for its owner (wire form, the gateway's
        keys), waiting at most ``within`` s while it holds nothing; empty when nothing
        waits (or no stream is held)."""
        stream = self._streams.get(task_id)
        if stream is None:
            return {}
        await stream.settled(within)
        return stream.shown()

    def answer(self, task_id: str, responses: dict[str, Any]) -> None:
        """The owner's answers (`HeldStream.answer`). Raises `ClientInputRefused`."""
        stream = self._streams.get(task_id)
        if stream is None:
            raise ClientInputRefused(
                f"task {task_id} waits for no input the gateway holds here",
                rpc_code=types.INVALID_PARAMS,
            )
        stream.answer(responses)

    def stop(self, task_id: str, reason: str) -> None:
        stream = self._streams.get(task_id)
        if stream is not None:
            stream.stop(reason)

    async def close(self) -> None:
        """Stops every stream and waits until each has ended: on shutdown, before the
        upstream connections they hold a request on close, and before the audit log
        that records their requests' answers does."""
        streams = list(self._streams.values())
        for stream in streams:
            stream.stop("the gateway is stopping")
        ending = [s.task for s in streams if s.task is not None]
        if ending:
            await asyncio.gather(*ending, return_exceptions=True)

    def expire(self) -> None:
        """Acts on what is due in every stream now (each stream's own loop does so on
        time; a test moving the `Clock` calls this)."""
        for stream in list(self._streams.values()):
            stream.expire()

    def _ended(self, stream: HeldStream) -> None:
        if self._streams.get(stream.task_id) is stream:
            del self._streams[stream.task_id]
            TASK_INPUT_STREAMS.dec()
