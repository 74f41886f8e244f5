"""`gateway serve --processes N`: N whole gateways sharing one port.

The supervisor (this process) binds one SO_REUSEPORT socket per process
(`gateway.cli.serve.bind_processes`), then starts each server process with the
*spawn* method: a fresh interpreter that inherits its socket and a pipe, and nothing
else, so no database connection, thread or client socket of the supervisor can leak
into a child; each child builds its own components (`gateway.cli.serve_process`). The
kernel spreads new connections over the listening sockets. While another process
serves, a dead process's socket leaves the port at once and its replacement gets a
fresh one, which receives nothing until it listens, so no new connection waits for a
replacement; with none serving, the socket is kept and its connections wait for the
next process rather than be refused (docs/decisions/0035, point 5).

- Start: the first process alone, then the others together, once it is ready: it
  migrates the database and creates missing keys for everyone, and an error at start
  (a policy refused, a database unreachable) is reported once, by it. A process that
  exits before it is ready stops the whole serve with a non-zero exit: what failed
  once would fail again, and a restart loop would hide it.
- Running: a process that exits (a crash, `kill -9`) is replaced by a new one. A
  replacement that exits before it is ready (it cannot start now) counts as an exit
  of its slot too and is retried with backoff, while the other processes keep
  serving; a slot that exits more often than `server.restarts` allows stops the serve
  with `CrashLoop` (gateway.cli.restarts).
- Orphans: the supervisor is the child subreaper of its processes' children, and
  waits for those a dead process left (its stdio upstreams, which end at their
  stdin's end-of-file): none stays a zombie, also where the supervisor is PID 1. One
  that keeps running gets SIGTERM, then SIGKILL, each after a grace; the serve stops
  only once none is left (gateway.cli.orphans).
- Metrics: the processes keep their values in one directory of this serve, so a
  scrape of any of them reports the whole serve; the directories earlier serves left
  (a supervisor killed with `kill -9`) are removed at start (gateway.cli.serve_metrics).
- Stopping (SIGTERM, SIGINT): every process gets SIGTERM and drains as a single
  gateway does (uvicorn's graceful shutdown, then the audit log's queue); one still
  running after ``drain_s`` is killed. A second signal is passed on (a second Ctrl-C
  forces uvicorn's exit).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from gateway.cli import orphans
from gateway.cli.restarts import ProcessFailed, Restarts
from gateway.cli.serve import rebind
from gateway.cli.serve_metrics import process_ended, shared_metrics
from gateway.cli.serve_process import ProcessSpec, serve_process

__all__ = ["ProcessFailed", "Supervisor"]

log = logging.getLogger("gateway.serve")

# Exit statuses of a process stopped as asked: uvicorn re-raises the signal that
# stopped it once it has shut down.
_STOPPED = {0, -signal.SIGTERM, -signal.SIGINT}


@dataclass
class _Child:
    index: int
    process: BaseProcess
    conn: Connection  # the supervisor's end of the pipe the child says "ready" on
    pid: int | None = None  # set once ready
    reported: bool = False  # its exit was the serve's error (ProcessFailed)

    @property
    def ready(self) -> bool:
        return self.pid is not None


class Supervisor:
    """Runs one server process per socket of ``sockets`` until a signal stops them."""

    def __init__(
        self,
        spec: Callable[[int], ProcessSpec],
        sockets: list[socket.socket],
        *,
        drain_s: float,
        restarts: Restarts,
    ) -> None:
        self._spec = spec
        self._sockets = sockets
        self._count = len(sockets)
        self._drain_s = drain_s
        self._restarts = restarts
        self._clock = restarts.clock
        self._context = multiprocessing.get_context("spawn")
        self._children: dict[int, _Child] = {}
        self._due: dict[int, float] = {}  # slot -> when its replacement starts (backoff)
        self._signals: list[int] = []
        # Every process was ready once: a replacement that cannot start is retried now.
        self._serving = False
        self._metrics = Path()
        self._orphans = orphans.Orphans(self._clock)
        self._orphans_due: float | None = None  # when an orphan is next signalled

    def run(self, on_ready: Callable[[list[int]], None]) -> int:
        """Serves until SIGTERM or SIGINT; 0 once every process stopped cleanly.
        Raises ProcessFailed when a process cannot start (the others stopped first),
        CrashLoop when a slot exits more often than `server.restarts` allows."""
        orphans.become_subreaper()
        wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_write, False)
        previous_wakeup = signal.set_wakeup_fd(wakeup_write)
        previous = {
            sig: signal.signal(sig, lambda signum, _frame: self._signals.append(signum))
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        # A handler only so that a child's end (an orphan's too) wakes the wait below
        # through the wakeup fd; the loop then reaps.
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        try:
            with shared_metrics() as self._metrics:
                try:
                    self._start(0)
                    self._until_ready(wakeup_read)
                    if not self._signals:
                        for index in range(1, self._count):
                            self._start(index)
                        self._until_ready(wakeup_read)
                    if not self._signals:
                        self._serving = True
                        on_ready([c.pid for c in self._children.values() if c.pid is not None])
                        self._supervise(wakeup_read)
                except ProcessFailed:
                    self._stop()
                    self._end_orphans(wakeup_read)
                    raise
                code = self._stop()
                self._end_orphans(wakeup_read)
                return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wakeup_read)
            os.close(wakeup_write)

    # --- the children -----------------------------------------------------------------

    def _start(self, index: int) -> None:
        ours, theirs = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve_process,
            args=(self._spec(index), self._sockets[index], theirs),
            name=f"gateway-{index}",
        )
        process.start()
        theirs.close()  # the child's end: its exit then reads as EOF here
        self._children[index] = _Child(index, process, ours)

    def _until_ready(self, wakeup: int) -> None:
        """Waits until every child is ready or a stop signal came; raises ProcessFailed
        for a child that exited first."""
        while not self._signals and not all(c.ready for c in self._children.values()):
            self._wait_once(wakeup)

    def _supervise(self, wakeup: int) -> None:
        while not self._signals:
            self._wait_once(wakeup)

    def _wait_once(self, wakeup: int) -> None:
        children = list(self._children.values())
        waiting = [c.conn for c in children if not c.ready]
        due = [*self._due.values(), *([self._orphans_due] if self._orphans_due else [])]
        timeout = max(0.0, min(due) - self._clock()) if due else None
        ready = wait([wakeup, *waiting, *(c.process.sentinel for c in children)], timeout)
        if wakeup in ready:
            os.read(wakeup, 512)  # the signal handler already recorded which
        for child in children:
            if not child.ready and child.conn in ready:
                self._read_ready(child)
            if child.process.sentinel in ready or not child.process.is_alive():
                self._exited(child)
        self._look_after_orphans()
        if self._signals:
            return
        now = self._clock()
        for index, due in sorted(self._due.items()):
            if due <= now:
                del self._due[index]
                self._start(index)

    def _look_after_orphans(self) -> None:
        next_s = self._orphans.look_after(self._own())
        self._orphans_due = None if next_s is None else self._clock() + next_s

    def _end_orphans(self, wakeup: int) -> None:
        """Once the processes stopped: waits until no orphan is left, signalling those
        that outstay their grace. Bounded: a process SIGKILL does not end within a
        further grace is stuck in the kernel, and is left to whoever adopts it next."""
        self._look_after_orphans()
        give_up = self._clock() + 3 * orphans.GRACE_S
        while self._orphans.running and self._clock() < give_up:
            until = min(self._orphans_due or give_up, give_up)
            if wakeup in wait([wakeup], max(0.0, until - self._clock())):
                os.read(wakeup, 512)
            self._look_after_orphans()
        if self._orphans.running:
            log.error("orphaned processes did not end after SIGKILL: %s", self._orphans.pids)

    def _own(self) -> set[int]:
        """The children multiprocessing waits for: never taken as orphans."""
        own = {c.process.pid for c in self._children.values() if c.process.pid is not None}
        tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
        return own | ({tracker} if tracker is not None else set())

    def _read_ready(self, child: _Child) -> None:
        try:
            pid = child.conn.recv()
        except EOFError:
            return  # it exited before it was ready: its sentinel says so
        child.pid = int(pid)
        log.info("gateway process %d (pid %d) ready", child.index, child.pid)

    def _exited(self, child: _Child) -> None:
        child.process.join()
        code = child.process.exitcode
        child.conn.close()
        if child.process.pid is not None:
            process_ended(self._metrics, child.process.pid)
        if self._signals:
            return  # stopping anyway: _stop reports
        if not self._serving and not child.ready:
            # A first start: what failed once would fail again.
            child.reported = True
            raise ProcessFailed(
                f"gateway process {child.index} exited with {_status(code)} before it was "
                "ready (its error is above); stopping the other processes"
            )
        del self._children[child.index]
        self._release_socket(child.index)
        try:
            delay = self._restarts.exited(child.index, _status(code))
        except ProcessFailed:
            log.error("gateway process %d keeps exiting: crash loop", child.index)
            raise
        log.warning(
            "gateway process %d (pid %s) exited with %s%s; starting another %s",
            child.index,
            child.process.pid,
            _status(code),
            "" if child.ready else " before it was ready (its error is above)",
            f"in {delay:g} s; the others keep serving" if delay else "now",
        )
        if delay:
            self._due[child.index] = self._clock() + delay
        else:
            self._start(child.index)

    def _release_socket(self, index: int) -> None:
        """Takes a dead process's socket out of the port while another process serves:
        the kernel then sends every new connection to the living, instead of hashing
        some to a socket no process accepts from until the replacement is up (seconds;
        longer in backoff). Its queue, the connections it had not yet accepted, is
        reset, or moved to another socket where the host allows it
        (`net.ipv4.tcp_migrate_req`). The replacement gets a fresh socket, which
        receives nothing until it listens. With no other process serving, the socket
        is kept: its connections wait for the replacement rather than be refused."""
        if not any(c.ready for c in self._children.values()):
            return
        dead = self._sockets[index]
        try:
            self._sockets[index] = rebind(dead)
        except OSError as exc:
            log.warning("cannot bind a fresh socket for gateway process %d: %s", index, exc)
            return  # kept: its connections wait for the replacement
        dead.close()

    def _stop(self) -> int:
        """SIGTERM to every process, then their exit within drain_s (SIGKILL after).
        0 when each stopped as asked."""
        stopping = [c for c in self._children.values() if not c.reported]
        if self._signals:
            log.info(
                "%s: stopping %d gateway processes",
                signal.Signals(self._signals[0]).name,
                len(stopping),
            )
        for child in stopping:
            _signal(child.process, signal.SIGTERM)
        forwarded = len(self._signals)  # the one that stops them, if any
        deadline = time.monotonic() + self._drain_s
        clean = True
        for child in stopping:
            while child.process.is_alive() and time.monotonic() < deadline:
                child.process.join(min(0.2, max(0.0, deadline - time.monotonic())))
                # A further signal (a second Ctrl-C) goes on to the processes.
                for sig in self._signals[forwarded:]:
                    for other in stopping:
                        _signal(other.process, sig)
                forwarded = len(self._signals)
            if child.process.is_alive():
                log.error(
                    "gateway process %d did not stop within %g s; killing it",
                    child.index,
                    self._drain_s,
                )
                child.process.kill()
                child.process.join()
            if child.process.exitcode not in _STOPPED:
                clean = False
                log.error(
                    "gateway process %d stopped with %s",
                    child.index,
                    _status(child.process.exitcode),
                )
        self._children.clear()
        if stopping:
            log.info("gateway processes stopped")
        return 0 if clean else 1


def _signal(process: BaseProcess, sig: int) -> None:
    if process.pid is not None and process.is_alive():
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            pass  # exited meanwhile


def _status(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
