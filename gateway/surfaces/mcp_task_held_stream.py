"""One ``tasks/result`` the gateway holds in the background for a task of a 2025-11-25
upstream, and what that upstream asks on it for a 2026-07-28 owner to answer
(docs/decisions/0044; `mcp_task_streams` holds these streams, one per task, bounded).

`HeldStream` is the `ClientChannel` the one relay puts the upstream's requests to: what
the owner declared decides what may be put to it, and each request, decided and allowed,
waits here under a key of the gateway's making until the owner's ``tasks/update``
answers it (`HeldStream.answer`), until it has waited ``mcp.input.timeout_s``
(`HeldStream.expire`), or until the stream ends. The stream runs its ``tasks/result``
until that answers or fails, until it is stopped, or until nothing waited on it for
``timeout_s``; whatever still waits then is answered with an error. Times are read on an
injected `Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types

from gateway.clock import Clock
from gateway.errors import ClientInputRefused, GatewayError
from gateway.operations import InputRequest
from gateway.surfaces.mcp_task_input import PolledChannel, wire_answers
from gateway.upstreams import mcp_client_input

log = logging.getLogger(__name__)


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
        typed = mcp_client_input.typed_answers(asked, {key: responses[key] for key in asked})
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
