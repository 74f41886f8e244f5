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
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types

from gateway.clock import Clock
from gateway.errors import ClientInputRefused, GatewayError
from gateway.metrics import TASK_INPUT_STREAMS
from gateway.operations import ClientInput, InputRequest, Operation
from gateway.relays import Relays
from gateway.surfaces.mcp_task_input import MAX_REMEMBERED, PolledChannel, for_task, wire_answers
from gateway.upstreams import mcp_requests

log = logging.getLogger(__name__)

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


@dataclass(eq=False)
class _Waiting:
    """One request of the upstream, decided and allowed, waiting for its answer."""

    key: str  # the gateway's, as the owner sees it
    request: InputRequest
    since: float  # `Clock` reading when it arrived
    shown: bool = False  # a tasks/get showed it: from then on it may be answered
    answer: dict[str, Any] | None = None
    error: ClientInputRefused | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def settle(
        self, answer: dict[str, Any] | None = None, error: ClientInputRefused | None = None
    ) -> None:
        if self.done.is_set():
            return  # settled once: a late timeout or end changes nothing
        self.answer, self.error = answer, error
        self.done.set()


class NoRoom(Exception):
    """No stream can be held for a task now (a bound is reached); says which."""


class HeldStream:
    """The background ``tasks/result`` of one task, and what waits on it. A
    `ClientChannel` for the relay: what the owner declared (``polled``) decides what
    may be put to it; asking parks the requests here for its ``tasks/update``."""

    def __init__(
        self,
        task_id: str,
        polled: PolledChannel,
        *,
        upstream: str,
        owner: str,
        timeout_s: float,
        clock: Clock,
        on_end: Callable[[HeldStream], None],
    ) -> None:
        self.task_id = task_id
        self.upstream = upstream
        self.owner = owner  # the owner's `Identity.key`
        self._polled = polled
        self._timeout_s = timeout_s
        self._clock = clock
        self._on_end = on_end
        self._waiting: dict[str, _Waiting] = {}
        self._quiet_since = clock()  # since when nothing waits
        self._changed = anyio.Event()
        self._wake = anyio.Event()
        self._scope = anyio.CancelScope()  # cancelled to end it
        self._why: str | None = None
        self.ended: str | None = None  # why it ended, once it has
        self.task: asyncio.Task[None] | None = None

    # --- the relay's ClientChannel ---------------------------------------------------

    def declared(self, request: InputRequest) -> bool:
        return self._polled.declared(request)

    def capabilities(self) -> dict[str, Any]:
        return self._polled.capabilities()

    def unreachable(self) -> str | None:
        return None

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        """``requests``, each decided and allowed by the relay, wait here, shown to the
        owner, until answered, timed out, or the stream ends. The answers under the
        same keys; raises `ClientInputRefused` for anything but answers."""
        if self.ended is not None:
            raise ClientInputRefused(self._gone())
        now = self._clock()
        waiting = {
            key: _Waiting("in_" + secrets.token_urlsafe(9), request, now)
            for key, request in requests.items()
        }
        for entry in waiting.values():
            self._waiting[entry.key] = entry
        self._poke()
        try:
            for entry in waiting.values():
                await entry.done.wait()
        finally:
            for entry in waiting.values():
                self._waiting.pop(entry.key, None)
            if not self._waiting:
                self._quiet_since = self._clock()
            self._poke()
        for entry in waiting.values():
            if entry.error is not None:
                raise entry.error
        return {key: entry.answer or {} for key, entry in waiting.items()}

    # --- the owner's side -------------------------------------------------------------

    def shown(self) -> dict[str, Any]:
        """What waits for the owner now (wire form, the gateway's keys); from now on
        each may be answered."""
        wire: dict[str, Any] = {}
        for entry in self._pending():
            entry.shown = True
            wire[entry.key] = {"method": entry.request.method, "params": entry.request.params}
        return wire

    def answer(self, responses: dict[str, Any]) -> None:
        """The owner's ``tasks/update``: each answer to a request it was shown, checked
        as that method's result, is the upstream's response. Keys of nothing shown are
        dropped; raises `ClientInputRefused` (-32602) when none is left, or when an
        answer is not a valid result (then nothing is answered: the owner may again)."""
        asked = {
            entry.key: entry.request
            for entry in self._pending()
            if entry.shown and entry.key in responses
        }
        if not asked:
            raise ClientInputRefused(
                f"task {self.task_id} waits for no answer under these keys: read it with "
                "tasks/get, and answer what it shows",
                rpc_code=types.INVALID_PARAMS,
            )
        typed = mcp_requests.typed_answers(asked, {key: responses[key] for key in asked})
        for key, answer in wire_answers(typed).items():
            self._waiting[key].settle(answer=answer)

    async def settled(self, within: float) -> None:
        """Waits, at most ``within`` seconds, until something waits to be shown or the
        stream ended."""
        with anyio.move_on_after(within):
            while self.ended is None and not any(self._pending()):
                await self._changed.wait()

    # --- its life -----------------------------------------------------------------------

    async def run(self, fetch: Callable[[], Awaitable[object]]) -> None:
        """The stream: ``fetch`` (the ``tasks/result``) until it answers, fails, or the
        stream is stopped; meanwhile what is due expires (`expire`)."""
        try:
            with self._scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._watch)
                    await self._fetch(fetch)
                    group.cancel_scope.cancel()
        finally:
            self._end()

    def stop(self, reason: str) -> None:
        """Ends the stream (its ``tasks/result`` is given up); whatever waits on it is
        answered with an error."""
        if self._why is None:
            self._why = reason
        # Answered first, so the upstream hears why before its tasks/result is given up.
        self._settle_all()
        self._scope.cancel()

    def expire(self) -> float | None:
        """Answers with an error what waited ``timeout_s`` for its answer, and ends the
        stream once nothing waited on it for as long; the seconds until the next such
        moment (None: it ended)."""
        if self.ended is not None or self._scope.cancel_called:
            return None
        now, due = self._clock(), math.inf
        for entry in self._pending():
            left = entry.since + self._timeout_s - now
            if left > 0:
                due = min(due, left)
                continue
            entry.settle(
                error=ClientInputRefused(
                    f"the client did not answer the upstream's {entry.request.method} within "
                    f"{self._timeout_s:g} s (mcp.input.timeout_s)"
                )
            )
        if not self._waiting:
            left = self._quiet_since + self._timeout_s - now
            if left <= 0:
                self.stop(f"nothing was asked on it for {self._timeout_s:g} s")
                return None
            due = min(due, left)
        return due

    async def _fetch(self, fetch: Callable[[], Awaitable[object]]) -> None:
        try:
            await fetch()
        except GatewayError as exc:  # the connection failed, the upstream refused it
            self._why = self._why or f"its tasks/result failed: {exc.message}"
        except Exception as exc:  # a background stream's failure is logged, never raised
            log.warning("tasks/result of task %s failed", self.task_id, exc_info=True)
            self._why = self._why or f"its tasks/result failed: {type(exc).__name__}"
        else:
            self._why = self._why or "its tasks/result answered: the task ended"

    async def _watch(self) -> None:
        """Sleeps until the next request is due to time out, or the stream to end idle,
        or until it changes: it never polls."""
        while True:
            self._wake = anyio.Event()
            due = self.expire()
            if due is None:
                return
            with anyio.move_on_after(due):
                await self._wake.wait()

    def _end(self) -> None:
        self.ended = self._why or "the gateway stopped holding it"
        self._settle_all()
        self._poke()
        self._on_end(self)

    def _settle_all(self) -> None:
        for entry in self._pending():
            entry.settle(error=ClientInputRefused(self._gone()))

    def _pending(self) -> list[_Waiting]:
        return [entry for entry in self._waiting.values() if not entry.done.is_set()]

    def _poke(self) -> None:
        self._wake.set()
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _gone(self) -> str:
        why = self.ended or self._why
        return f"the gateway no longer holds the tasks/result of task {self.task_id}: {why}"


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
