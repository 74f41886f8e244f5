"""Idle workers sleep, and still take work at once (docs/decisions/0042).

The workers here have a fallback poll of an hour (``idle_poll_s``): each run finishing
within the tests' deadline was found by what should find it, not by that poll.

- a run submitted through another process: announced (PostgreSQL) or seen in the
  database's data version (SQLite), on a real `gateway worker` process;
- a run whose worker died: taken over when its lease runs out, by the database's
  next timer (`RunStore.next_due_in`), nobody writing anything.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.executor.harness import executor_parts
from tests.support.processes import GatewayServer, McpUpstreamServer, spawn, write_policy

pytestmark = pytest.mark.anyio

IDLE_POLL_S = 3600.0  # far past any deadline of these tests


def _step(label: str) -> dict:
    return {"id": "a", "tool": "up__effect", "arguments": {"label": label}}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


@pytest.mark.timeout(300)
async def test_a_run_submitted_through_another_process_wakes_an_idle_worker(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    server = GatewayServer.configure(
        tmp_path / "worker",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(tmp_path / "worker", [{"role": "agent", "tool": "up__effect"}]),
        storage_url=database_url,
    )
    config = {**server.config, "executor": {"workers": 1, "idle_poll_s": IDLE_POLL_S}}
    config_path = tmp_path / "worker.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # This process submits and runs nothing (no workers); the worker process runs.
    async with executor_parts(database_url, tmp_path, upstream.url, workers=0) as parts:
        worker = spawn(
            [sys.executable, "-m", "gateway", "worker", "--config", str(config_path)],
            tmp_path / "worker.log",
        )
        try:
            # Each run is submitted after the previous one finished: the worker has
            # looked, found nothing and gone to sleep for an hour in between.
            for index in range(3):
                run_id = await parts.submit({"name": f"run-{index}", "steps": [_step(str(index))]})
                view = await parts.wait(run_id)
                assert view["status"] == "succeeded", (view, worker.log()[-2000:])
        finally:
            worker.stop()


async def test_a_run_whose_worker_died_is_taken_over_when_its_lease_runs_out(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    async with executor_parts(database_url, tmp_path / "dies", upstream.url, workers=0) as parts:
        run_id = await parts.submit({"name": "orphan", "steps": [_step("orphan")]})
        # A worker that claims it and dies at once: its lease runs out in a moment,
        # and nothing is written when it does.
        claim = parts.store.claim("dead-worker", 1.0)
        assert claim is not None and claim.run_id == run_id
    async with executor_parts(
        database_url, tmp_path / "takes-over", upstream.url, workers=1, idle_poll_s=IDLE_POLL_S
    ) as parts:
        view = await parts.wait(run_id)
        assert view["status"] == "succeeded"
        attempts = parts.store.attempt_rows(run_id)
        assert attempts and all(a.run_id == run_id for a in attempts)
