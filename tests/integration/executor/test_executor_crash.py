"""Crash tests: several `gateway worker` processes, killed with SIGKILL at random and
one stopped (SIGSTOP) past its lease, on SQLite and on PostgreSQL.

What must hold whatever the timing: every run completes; each step's success is
recorded exactly once; the idempotent test tool applies each step's effect exactly
once; and the test proves it hit the crash window (some steps were invoked again
after their worker died, with the same idempotency key).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
import yaml

from gateway.store import create_engine
from gateway.store.tables import run_steps, runs, step_attempts
from tests.integration.executor.harness import executor_parts
from tests.support.processes import GatewayServer, McpUpstreamServer, Process, spawn, write_policy
from tests.support.waiting import eventually_async

RUNS = 24
# Of them, runs whose steps take long enough that a worker holding one is still holding
# it when the test has stopped it, however loaded the machine (the pause's target).
SLOW_RUNS = 2
SLOW_DELAY_S = 3.0
LEASE_S = 1.5
# Bounds for a machine under heavy load, not durations: the chaos loop ends as soon as
# it has done what it came for (or every run finished), the calm as soon as every run
# has, and a takeover is waited for only until it happened.
CHAOS_S = 180.0
CALM_S = 180.0
TAKEOVER_S = 30.0


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path)
    yield server
    server.process.stop()


def _plan(delay_s: float) -> dict[str, Any]:
    # A diamond: two branches in parallel between a first and a last step.
    def effect(step_id: str, needs: list[str]) -> dict[str, Any]:
        return {
            "id": step_id,
            "tool": "up__effect",
            "needs": needs,
            "arguments": {"label": step_id, "delay_s": delay_s},
            "retry": {"max_attempts": 5, "backoff_s": 0.1},
        }

    return {
        "name": "diamond",
        "steps": [
            effect("a", []),
            effect("b", ["a"]),
            effect("c", ["a"]),
            effect("d", ["b", "c"]),
        ],
    }


def _worker_config(directory: Path, database_url: str, upstream: McpUpstreamServer) -> Path:
    server = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(directory, [{"role": "agent", "tool": "up__effect"}]),
        storage_url=database_url,
    )
    config = {**server.config, "executor": {"workers": 1, "lease_s": LEASE_S, "poll_s": 0.05}}
    path = directory / "worker.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _spawn_worker(config: Path, directory: Path, number: int) -> Process:
    return spawn(
        [sys.executable, "-m", "gateway", "worker", "--config", str(config)],
        directory / f"worker-{number}.log",
    )


def _leaseholders(database_url: str) -> dict[int, str]:
    """pid → run id, for every worker process holding a live lease."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(runs.c.id, runs.c.lease_owner).where(runs.c.lease_owner.is_not(None))
            ).all()
    finally:
        engine.dispose()
    return {int(owner.split(":")[1]): run_id for run_id, owner in rows}


@pytest.mark.anyio
@pytest.mark.timeout(600)
async def test_runs_survive_killed_and_paused_workers(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    config = _worker_config(tmp_path / "workers", database_url, upstream)
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        slow_ids = [await parts.submit(_plan(delay_s=SLOW_DELAY_S)) for _ in range(SLOW_RUNS)]
        run_ids = slow_ids + [
            await parts.submit(_plan(delay_s=0.4)) for _ in range(RUNS - SLOW_RUNS)
        ]

    workers = [_spawn_worker(config, tmp_path, n) for n in range(3)]
    spawned = len(workers)
    kills = 0
    paused: dict[str, Any] = {}
    engine = create_engine(database_url)
    try:
        started = time.monotonic()
        while time.monotonic() - started < CHAOS_S:
            await anyio.sleep(rng.uniform(0.2, 0.6))
            if _all_finished(engine, run_ids) or (paused and kills >= 4):
                break
            holders = _leaseholders(database_url)
            live = [w for w in workers if w.popen.poll() is None]
            assert live, "every worker exited:\n" + "\n".join(w.log()[-2000:] for w in workers)
            # Two kills first, then the pause, then more kills while runs remain.
            if not paused and holders and kills >= 2:
                # Stop a worker that holds a run, past its lease, then let it go on:
                # it must notice it lost the run and write nothing more. A slow run's
                # holder first: a quick run may end between reading the leases and
                # the stop.
                holding = [w for w in live if w.popen.pid in holders]
                slow = [w for w in holding if holders[w.popen.pid] in slow_ids]
                victim = (slow or holding or [None])[0]
                if victim is not None:
                    run_id = holders[victim.popen.pid]
                    token = _token(engine, run_id)
                    os.kill(victim.popen.pid, signal.SIGSTOP)
                    if _leaseholders(database_url).get(victim.popen.pid) != run_id:
                        # It let the run go before it stopped: nothing to take over.
                        os.kill(victim.popen.pid, signal.SIGCONT)
                        continue
                    try:
                        # Its lease runs out (it cannot renew) and another worker takes
                        # the run over.
                        await eventually_async(
                            lambda: _token(engine, run_id) != token,  # noqa: B023 (awaited here)
                            f"a takeover of {run_id}",
                            timeout_s=TAKEOVER_S,
                        )
                        paused = {"worker": victim, "run": run_id, "token": token}
                    except AssertionError:
                        # On SQLite a worker stopped inside a write transaction holds
                        # the single write lock, so nobody can take over until it
                        # resumes; then try again with another pause.
                        pass
                    finally:
                        os.kill(victim.popen.pid, signal.SIGCONT)
                    continue
            # Kill workers with a step in flight at the tool: the crash window.
            flying = _in_flight(engine)
            busy = [w for w in live if w.popen.pid in flying and w is not paused.get("worker")]
            if busy:
                victim = rng.choice(busy)
                victim.popen.send_signal(signal.SIGKILL)
                victim.popen.wait(5)
                kills += 1
                workers.append(_spawn_worker(config, tmp_path, spawned))
                spawned += 1
        # Calm: the surviving workers finish whatever is left.
        await eventually_async(
            lambda: _all_finished(engine, run_ids),
            "every run finished",
            timeout_s=CALM_S,
            detail=lambda: "\n".join(w.log()[-3000:] for w in workers),
        )
        _check_exactly_once(engine, run_ids, upstream)
        assert kills >= 2, "the chaos loop never killed a busy worker"
        assert paused, "no worker was ever paused while holding a run"
        # The paused worker's run was taken over while it was stopped, and the worker,
        # resumed, noticed it had lost the run (its fenced writes were refused).
        assert _token(engine, paused["run"]) > paused["token"]
        lost = [
            line
            for line in paused["worker"].log().splitlines()
            if paused["run"] in line and ("lost" in line or "stops run" in line)
        ]
        assert lost, paused["worker"].log()[-3000:]
    finally:
        for worker in workers:
            if worker.popen.poll() is None:
                os.kill(worker.popen.pid, signal.SIGCONT)
            worker.stop(timeout=10)
        engine.dispose()


def _in_flight(engine: sa.Engine) -> set[int]:
    """pids of workers with a step attempt started and not finished."""
    with engine.connect() as conn:
        owners = conn.execute(
            sa.select(step_attempts.c.worker).where(step_attempts.c.status == "running")
        ).scalars()
        return {int(owner.split(":")[1]) for owner in owners}


def _token(engine: sa.Engine, run_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(runs.c.fencing_token).where(runs.c.id == run_id)).scalar_one()
        )


def _all_finished(engine: sa.Engine, run_ids: list[str]) -> bool:
    with engine.connect() as conn:
        statuses = conn.execute(sa.select(runs.c.status).where(runs.c.id.in_(run_ids))).scalars()
        return all(s in ("succeeded", "failed", "cancelled") for s in statuses)


def _check_exactly_once(engine: sa.Engine, run_ids: list[str], upstream: McpUpstreamServer) -> None:
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(runs.c.id, runs.c.status)).all())
        steps = conn.execute(
            sa.select(run_steps.c.run_id, run_steps.c.step_id, run_steps.c.status)
        ).all()
        attempts = conn.execute(sa.select(step_attempts)).all()
    assert {statuses[r] for r in run_ids} == {"succeeded"}, statuses
    assert {s.status for s in steps} == {"succeeded"}
    # Each step's success recorded exactly once.
    ok = Counter((a.run_id, a.step_id) for a in attempts if a.status == "ok")
    assert set(ok) == {(s.run_id, s.step_id) for s in steps}
    assert set(ok.values()) == {1}
    # Each effect applied exactly once, keyed by the step's idempotency key.
    effects_log = Path(str(upstream.call_log) + ".effects.jsonl")
    effects = [json.loads(line) for line in effects_log.read_text().splitlines()]
    applied = Counter(e["key"] for e in effects)
    assert set(applied) == {f"{s.run_id}:{s.step_id}" for s in steps}
    assert set(applied.values()) == {1}
    # The crash window was hit: some steps reached the tool more than once (same key).
    calls = Counter(
        c["meta"]["io.agentgateway/idempotency-key"]
        for c in upstream.calls()
        if c["tool"] == "effect"
    )
    reinvoked = [key for key, n in calls.items() if n > 1]
    assert reinvoked, "no step was invoked again: the test never hit the crash window"
    abandoned = [a for a in attempts if a.status == "abandoned"]
    assert abandoned, "no attempt was abandoned by a dead worker"
