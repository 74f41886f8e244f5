"""A separate OS process appending to a shared audit log (used by the multi-process test).

Usage: python audit_append_worker.py URL ORIGIN NAME TASKS APPENDS_PER_TASK [PAUSE_S]

PAUSE_S (default 0) is slept between a task's appends: with a pause longer than the
sequencer's INLINE_QUIET_S, a process commits on its event loop whenever it finds the
database free, and falls back to its writer thread when another process holds it.

Starts an AuditLog, prints "ready", waits for a line on stdin (so that all workers
start appending at the same moment), appends, and prints one JSON line: the seqs it
was given, in order.
"""

from __future__ import annotations

import asyncio
import json
import sys

from gateway.audit import AuditLog, AuditRecord
from gateway.store import create_engine


async def main(url: str, origin: str, name: str, tasks: int, per_task: int, pause_s: float) -> None:
    engine = create_engine(url)
    log = AuditLog(engine, origin, max_batch=32)
    await log.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)

    async def producer(t: int) -> list[int]:
        seqs = []
        for i in range(per_task):
            ref = f"{name}-{t}-{i}"
            seqs += await log.append(AuditRecord("call.attempt", ref, {"worker": name}))
            if pause_s:
                await asyncio.sleep(pause_s)
        return seqs

    results = await asyncio.gather(*(producer(t) for t in range(tasks)))
    await log.close()
    engine.dispose()
    print(json.dumps(sorted(s for seqs in results for s in seqs)), flush=True)


if __name__ == "__main__":
    url, origin, name, tasks, per_task = sys.argv[1:6]
    pause_s = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    asyncio.run(main(url, origin, name, int(tasks), int(per_task), pause_s))
