"""A TCP proxy in front of an upstream that a test turns faulty: it passes bytes both
ways, or hangs (accepts, reads, never answers), or drops (accepts, reads the request,
closes the connection without a byte of answer). Passing, it can also cut one
connection at the moment its peer has done what was asked and answers
(`cut_reply_after`): the client cannot know that it was done.

Runs on its own event loop in a thread of the test process. Changing the mode cuts
every connection open at that moment, as a network fault would: a client's kept-alive
connection cannot go on passing after the upstream "went away".
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.waiting import TIMEOUT_S


class Mode(enum.Enum):
    PASS = "pass"
    HANG = "hang"
    DROP = "drop"


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.mode = Mode.PASS
        self.accepted = {mode: 0 for mode in Mode}  # connections taken in each mode
        self._loop = asyncio.new_event_loop()
        self._open: set[asyncio.StreamWriter] = set()
        self._cut_marker: bytes | None = None
        self.cuts = 0  # connections cut by `cut_reply_after`
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def hanging(self) -> int:
        """Connections being held without an answer now."""
        return self._count_open(Mode.HANG)

    def set_mode(self, mode: Mode) -> None:
        """Switches mode and cuts every open connection."""
        done = asyncio.run_coroutine_threadsafe(self._switch(mode), self._loop)
        done.result(TIMEOUT_S)

    async def _switch(self, mode: Mode) -> None:
        self.mode = mode
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def cut_reply_after(self, marker: bytes) -> None:
        """The next time a client sends bytes holding ``marker`` (whole, in one read),
        they reach the upstream, and its answer does not come back: the connection is
        cut when the answer arrives. Once."""
        self._loop.call_soon_threadsafe(setattr, self, "_cut_marker", marker)

    def _count_open(self, mode: Mode) -> int:
        return sum(1 for w in list(self._open) if getattr(w, "fault_mode", None) is mode)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        self.accepted[mode] += 1
        writer.fault_mode = mode  # type: ignore[attr-defined]
        self._open.add(writer)
        try:
            if mode is Mode.HANG:
                while await reader.read(65536):  # read everything, answer nothing
                    pass
            elif mode is Mode.DROP:
                await reader.read(65536)
                writer.transport.abort()
            else:
                await self._relay(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._open.add(up_writer)

        cutting = False  # the upstream's next answer is not passed on

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, upward: bool
        ) -> None:
            nonlocal cutting
            try:
                while data := await source.read(65536):
                    if not upward and cutting:
                        self.cuts += 1
                        return
                    if upward and self._cut_marker is not None and self._cut_marker in data:
                        self._cut_marker, cutting = None, True
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.transport.abort()

        try:
            await asyncio.gather(
                pump(reader, up_writer, upward=True), pump(up_reader, writer, upward=False)
            )
        finally:
            self._open.discard(up_writer)
            up_writer.transport.abort()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT_S)

    async def _shut(self) -> None:
        """Cuts every connection and ends their tasks, so none is left pending."""
        await self._switch(self.mode)
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def fault_proxy(target_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port)
    proxy._thread.start()
    if not proxy._ready.wait(TIMEOUT_S):
        raise RuntimeError("the fault proxy did not start")
    try:
        yield proxy
    finally:
        proxy.close()
