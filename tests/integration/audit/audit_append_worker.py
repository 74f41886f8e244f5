"""A separate OS process appending to a shared audit log (used by the multi-process test).

Usage: python -m tests.integration.audit.audit_append_worker URL ORIGIN NAME TASKS PER_TASK [walk]

With ``walk``, the log reads a clock that moves on by more than the sequencer's
INLINE_QUIET_S before each append and stands still during commits: every append is
quiet and every commit fast, so a process commits on its event loop whenever it
finds the database free, and falls back to its writer thread when another process
holds it, however busy the machine is. Without, the log runs on the real clock.

Starts an AuditLog, prints "ready", waits for a line on stdin (so that all workers
start appending at the same moment), appends, and prints one JSON line: the seqs it
was given, in order.
"""

from __future__ import annotations

import asyncio
import json
import sys

from gateway.audit import AuditLog, AuditRecord
from gateway.clock import monotonic
from gateway.store import create_engine
from tests.support.clock import FakeClock


async def main(url: str, origin: str, name: str, tasks: int, per_task: int, walk: bool) -> None:
    engine = create_engine(url)
    clock = FakeClock()
    log = AuditLog(engine, origin, max_batch=32, clock=clock if walk else monotonic)
    await log.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)

    async def producer(t: int) -> list[int]:
        seqs = []
        for i in range(per_task):
            ref = f"{name}-{t}-{i}"
            if walk:
                clock.advance(0.01)
            seqs += await log.append(AuditRecord("call.attempt", ref, {"worker": name}))
        return seqs

    results = await asyncio.gather(*(producer(t) for t in range(tasks)))
    await log.close()
    engine.dispose()
    print(json.dumps(sorted(s for seqs in results for s in seqs)), flush=True)


if __name__ == "__main__":
    url, origin, name, tasks, per_task = sys.argv[1:6]
    walk = sys.argv[6:] == ["walk"]
    asyncio.run(main(url, origin, name, int(tasks), int(per_task), walk))
