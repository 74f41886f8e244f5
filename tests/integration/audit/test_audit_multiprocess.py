"""Several gateway processes appending to one database share one chain: no gaps, no
forks, no seq given twice (the head is read under the database-wide writer lock)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

from sqlalchemy import Engine

from gateway.audit import iter_entries, verify_chain
from tests.support.processes import REPO

WORKER = "tests.integration.audit.audit_append_worker"
ORIGIN = "test.example/audit"
PROCESSES, TASKS, PER_TASK = 3, 8, 40


def test_processes_append_to_one_chain(engine: Engine, database_url: str) -> None:
    _run_workers(engine, database_url, tasks=TASKS, per_task=PER_TASK, walk=False)


def test_processes_appending_at_a_walk_share_one_chain(engine: Engine, database_url: str) -> None:
    # One task each, whose appends are all quiet (the worker's clock says so): on SQLite
    # each process commits on its event loop whenever it finds the file free and hands
    # over to its writer thread when another process holds it (busy timeout 0 on the
    # loop).
    _run_workers(engine, database_url, tasks=1, per_task=80, walk=True)


def _run_workers(
    engine: Engine, database_url: str, *, tasks: int, per_task: int, walk: bool
) -> None:
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                WORKER,
                database_url,
                ORIGIN,
                f"w{n}",
                str(tasks),
                str(per_task),
                *(["walk"] if walk else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for n in range(PROCESSES)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:  # release them together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [w.returncode for w in workers] == [0] * PROCESSES
    given = {f"w{n}": json.loads(out) for n, out in enumerate(outputs)}

    total = PROCESSES * tasks * per_task
    all_seqs = sorted(s for seqs in given.values() for s in seqs)
    assert all_seqs == list(range(total))  # no gap, nothing given twice
    entries = list(iter_entries(engine))
    assert len(entries) == total
    verify_chain(entries, ORIGIN)  # one chain, no fork
    owner = {s: name for name, seqs in given.items() for s in seqs}
    for entry in entries:
        assert entry.payload == {"worker": owner[entry.seq]}
        assert entry.ref.startswith(f"{owner[entry.seq]}-")
    # On PostgreSQL, waiters for the advisory lock queue in order, so the processes
    # visibly take turns. SQLite's busy handler polls and is not fair: one process may
    # write several batches in a row, so only correctness is asserted there.
    if engine.dialect.name == "postgresql" and not walk:
        owners = [owner[e.seq] for e in entries]
        turns = sum(1 for a, b in itertools.pairwise(owners) if a != b)
        assert turns >= PROCESSES
