"""One server process: a whole gateway serving on a socket it was handed.

`run_server` is how `gateway serve` runs uvicorn, in its own process (one process)
or in each process the supervisor starts (`serve_process`, the target of a *spawn*
child: it builds every component itself, after the start, so nothing holding a
connection, a thread or a socket comes from the supervisor; docs/decisions/0035).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from gateway.config import Config

log = logging.getLogger("gateway.serve")

# uvicorn's exit status for an app whose start failed (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE = 3
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ProcessSpec:
    """What a server process needs, sent to it by pickling (the spawn method)."""

    config: Config
    index: int
    log_level: str
    json_logs: bool
    # The supervisor's pid: in a container it is PID 1, so "my parent is PID 1" cannot
    # mean "the supervisor died".
    supervisor_pid: int


# Builds the app, inside the server's event loop, and is left once the server stopped:
# whatever the build starts ahead (dev mode's demo upstream, gateway.upstreams.mcp_stdio)
# lives in the loop that serves, and ends with the serve.
AppStart = Callable[[], AbstractAsyncContextManager["ASGIApp"]]


def built(build: Callable[[], ASGIApp]) -> AppStart:
    """An `AppStart` that builds the app and starts nothing ahead."""

    @asynccontextmanager
    async def start() -> AsyncIterator[ASGIApp]:
        yield build()

    return start


def run_server(
    start: AppStart, sock: socket.socket, *, on_listening: Callable[[], None] | None
) -> bool:
    """Serves the app ``start`` builds on ``sock`` until a signal stops it; False when
    the app's start failed (its lifespan raised: the error is logged)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            # Before uvicorn takes the signals and loads the app, as when the app was
            # built before the loop ran.
            async with start() as app:
                self.config.app = app
                await super().serve(sockets)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit:
                settle_heap()
                if on_listening is not None:
                    on_listening()

    config = uvicorn.Config(
        _not_built,  # replaced in `serve`, before uvicorn loads it
        log_config=None,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = Server(config)
    server.run(sockets=[sock])
    return server.started


# Net allocations between two young collections of the cyclic garbage collector
# (CPython's default 700). Served at c=16, a call left ≈ 100 container objects more
# than it freed, so a young collection ran every ≈ 6 calls, a middle one every ≈ 70
# and a full one, over the ≈ 190,000 objects of a started gateway, every few hundred.
# Cycles are still collected, later.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Once the app has started: everything it built so far (modules, the app, the
    policy, the catalog) lives as long as the process, so it is moved out of the
    garbage collector's generations (`gc.freeze`) and no collection walks it again; and
    young collections run less often. perf put 2–3 % of a served gateway's CPU in
    the collector (more while a full collection over the whole heap ran, stalling
    the event loop), ≈ 0.1 % after (docs/decisions/0039)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def _not_built(scope: object, receive: object, send: object) -> None:
    raise RuntimeError("the app is built when the server runs")


def serve_process(spec: ProcessSpec, sock: socket.socket, ready: Connection) -> None:
    """The body of server process ``spec.index``: says its pid on ``ready`` once it
    listens; exits non-zero when it cannot start."""
    _stop_with_supervisor(spec.supervisor_pid)
    _keep_files_from_children()
    from gateway import telemetry
    from gateway.app import build_app
    from gateway.logs import configure_logging

    configure_logging(spec.log_level, json_format=spec.json_logs)

    def listening() -> None:
        ready.send(os.getpid())
        ready.close()

    try:
        with telemetry.tracing(spec.config.tracing):  # before the app: it decides middleware
            started = run_server(
                built(lambda: build_app(spec.config)), sock, on_listening=listening
            )
    except GatewayError as error:
        print(f"gateway: error: {error.message}", file=sys.stderr, flush=True)
        sys.exit(1)
    if not started:
        sys.exit(STARTUP_FAILURE)


def _keep_files_from_children() -> None:
    """Makes every file this process was started with, past stdin, stdout and stderr,
    close at the exec of a process it starts. The spawn method hands its socket, its
    pipe to the supervisor and multiprocessing's own pipes down as inheritable files,
    and a process started through uvloop (the stdio upstreams) keeps every inheritable
    file it was not told to close: an upstream would hold the gateway's listening
    socket, able to accept the gateway's own clients and their tokens, and keep it in
    the port's group after this process died."""
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory's own descriptor, closed by now


def _stop_with_supervisor(supervisor_pid: int) -> None:
    """Asks the kernel to send this process SIGTERM when the supervisor dies (Linux), so
    a supervisor killed with SIGKILL leaves no server holding the port."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("cannot ask to be stopped with the supervisor (prctl)")
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
