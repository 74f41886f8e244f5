"""The supervisor as the reaper of what its server processes leave behind (Linux).

A server process that dies (a crash, `kill -9`) leaves its own children running: the
stdio upstreams it started. The kernel gives an orphan to the nearest ancestor that
asked to be a *child subreaper*, else to PID 1. In a container whose entrypoint is
`gateway`, the supervisor *is* PID 1, and an init that never waits for an adopted
child leaves it a zombie for good. So the supervisor asks to be a subreaper
(`PR_SET_CHILD_SUBREAPER`: the orphans come to it on any host, not to whatever PID 1
is) and waits for every child that ended which is not one of its own processes
(`reap`). An orphaned stdio upstream ends by itself: its stdin, a pipe from the dead
process, reads end-of-file.

Its own children (the server processes, multiprocessing's resource tracker) are
waited for by multiprocessing, by pid: `reap` never waits for any pid but those it
found ended and not its own, so it cannot take an exit status multiprocessing needs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger("gateway.serve")

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


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


def reap(own: Collection[int]) -> list[int]:
    """Waits for every ended child of this process whose pid is not in ``own``; the
    pids reaped. Reads /proc (Linux); elsewhere nothing."""
    me = str(os.getpid())
    reaped = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command name (in parentheses, may hold spaces): state, ppid.
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        if parent != me or state != "Z" or pid in own:
            continue
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # reaped meanwhile
        if done:
            reaped.append(pid)
    if reaped:
        log.info("reaped %d orphaned process(es): %s", len(reaped), reaped)
    return reaped
