"""The supervisor as the reaper, and the ender, of what its server processes leave
behind (Linux).

A server process that dies (a crash, `kill -9`) leaves its own children running: the
stdio upstreams it started. The kernel gives an orphan to the nearest ancestor that
asked to be a *child subreaper*, else to PID 1. In a container whose entrypoint is
`gateway`, the supervisor *is* PID 1, and an init that never waits for an adopted
child leaves it a zombie for good. So the supervisor asks to be a subreaper
(`PR_SET_CHILD_SUBREAPER`: the orphans come to it on any host, not to whatever PID 1
is) and looks after every child that is not one of its own processes (`Orphans`).

An orphaned stdio upstream should end by itself: its stdin, a pipe from the dead
process, reads end-of-file. One that does not is ended the way the MCP SDK's stdio
client ends a server that outlives its stdin: SIGTERM once it has had `grace_s` to
exit, SIGKILL `grace_s` after that. What an ended orphan leaves comes to the
supervisor in turn, and is ended the same way.

Its own children (the server processes, multiprocessing's resource tracker) are
waited for by multiprocessing, by pid: the supervisor never signals nor waits for a
pid in ``own``, so it cannot take an exit status multiprocessing needs. A pid it
signals is one it saw as its child, not yet waited for, in the same look: a child's
pid cannot be reused before its parent has waited for it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("gateway.serve")

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h

# As long as the MCP SDK's stdio client gives a server after closing its stdin, and
# again after SIGTERM (mcp.client.stdio.PROCESS_TERMINATION_TIMEOUT).
GRACE_S = 2.0


def become_subreaper() -> bool:
    """Asks the kernel for the orphans of this process's descendants; False where it
    cannot (not Linux, or prctl refused)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning(
            "cannot become the reaper of orphaned upstreams (prctl: %s)",
            os.strerror(ctypes.get_errno()),
        )
        return False
    return True


@dataclass
class _Orphan:
    pid: int
    since: float  # when it was first seen running, or was last signalled
    sent: signal.Signals | None = None


class Orphans:
    """The children of this process that are not its own: waited for once ended,
    signalled while they outstay their grace. Reads /proc (Linux); elsewhere it finds
    none."""

    def __init__(self, clock: Callable[[], float], grace_s: float = GRACE_S) -> None:
        self._clock = clock
        self._grace_s = grace_s
        self._running: dict[int, _Orphan] = {}

    @property
    def running(self) -> bool:
        """Whether an orphan was running at the last look."""
        return bool(self._running)

    @property
    def pids(self) -> list[int]:
        """The orphans running at the last look."""
        return sorted(self._running)

    def look_after(self, own: Collection[int]) -> float | None:
        """Waits for the ended orphans, signals those due; the seconds until the next
        is due (None: none is running)."""
        ended, running = _children(own)
        reaped = [pid for pid in ended if _wait(pid)]
        if reaped:
            log.info("reaped %d orphaned process(es): %s", len(reaped), reaped)
        now = self._clock()
        self._running = {pid: self._running.get(pid) or _Orphan(pid, now) for pid in running}
        for orphan in self._running.values():
            if now - orphan.since >= self._grace_s and orphan.sent is not signal.SIGKILL:
                orphan.sent = signal.SIGKILL if orphan.sent else signal.SIGTERM
                orphan.since = now
                log.warning(
                    "orphaned process %d outlived its input (its server process died); sending %s",
                    orphan.pid,
                    orphan.sent.name,
                )
                os.kill(orphan.pid, orphan.sent)
        waiting = [
            o.since + self._grace_s - now
            for o in self._running.values()
            if o.sent is not signal.SIGKILL
        ]
        if waiting:
            return max(0.0, min(waiting))
        return self._grace_s if self._running else None  # killed: its end wakes us sooner


def _children(own: Collection[int]) -> tuple[list[int], list[int]]:
    """The pids of this process's children not in ``own``: (ended, running)."""
    me = str(os.getpid())
    ended, running = [], []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command name (in parentheses, may hold spaces): state, ppid.
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        if parent != me or pid in own:
            continue
        (ended if state in ("Z", "X") else running).append(pid)
    return ended, running


def _wait(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # waited for meanwhile
    return bool(done)
