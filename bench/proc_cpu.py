"""CPU time of a process and its descendants, read from /proc (Linux).

The figure "CPU per call of the middle process" is the user + system time a server
process (and any process it started: uvicorn workers, an engine's helper) spent during
a run, divided by the calls of the run. It is read before and after the run as
utime + stime of every live process in the tree, plus cutime + cstime (what children
that already exited and were reaped had used), from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class StatFields:
    pid: int
    ppid: int
    utime: int  # clock ticks
    stime: int
    cutime: int
    cstime: int


def parse_stat(text: str) -> StatFields:
    """The fields of one ``/proc/<pid>/stat`` line that matter here.

    The second field, the command name, is in parentheses and may itself contain
    spaces and parentheses, so the line is split after its *last* closing one."""
    head, _, rest = text.rpartition(")")
    if not _:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    # After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    return StatFields(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def _all_stats() -> list[StatFields]:
    stats = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked, or not readable
    return stats


def tree_ticks(root: int, stats: list[StatFields]) -> int:
    """utime + stime + cutime + cstime summed over ``root`` and its descendants."""
    children: dict[int, list[StatFields]] = {}
    by_pid: dict[int, StatFields] = {}
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
        by_pid[s.pid] = s
    if root not in by_pid:
        raise ProcessLookupError(root)
    total, stack = 0, [by_pid[root]]
    while stack:
        s = stack.pop()
        total += s.utime + s.stime + s.cutime + s.cstime
        stack.extend(children.get(s.pid, []))
    return total


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each process tree in ``pids`` (one /proc scan)."""
    stats = _all_stats()
    return {pid: tree_ticks(pid, stats) / CLOCK_TICKS for pid in pids}


def load_average() -> list[float]:
    return [float(x) for x in (PROC / "loadavg").read_text().split()[:3]]
