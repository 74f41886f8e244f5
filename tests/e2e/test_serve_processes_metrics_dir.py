"""A serve whose supervisor was killed with ``kill -9`` leaves its metrics directory in
``$TMPDIR``; the next `gateway serve --processes 2` removes it as it starts, and its own
directory works: a scrape of either process counts the calls of both
(gateway.cli.serve_metrics, docs/operations.md "Processes on one host").
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.serve_metrics import PREFIX
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.serve_processes import (
    calls_counted,
    pids_now,
    pinned_to_each,
    serve_all,
)
from tests.support.waiting import TIMEOUT_S, eventually

PROCESSES = 2
GRANTS = [{"role": "agent", "tool": "up__echo"}]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[McpUpstreamServer]:
    (tmp_path / "upstream").mkdir()
    server = McpUpstreamServer.start(tmp_path / "upstream")
    yield server
    server.process.stop()


def serve(tmp_path: Path, name: str, upstream: McpUpstreamServer) -> GatewayServer:
    """`gateway serve` with two processes and ``tmp_path/tmp`` as its TMPDIR, ready."""
    server = GatewayServer.configure(
        tmp_path / name,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 30}],
        policy=write_policy(tmp_path / name, GRANTS),
        env={"TMPDIR": str(tmp_path / "tmp")},
    )
    serve_all(server, PROCESSES)
    return server


def metrics_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob(PREFIX + "*"))


def test_the_next_serve_removes_the_directory_a_killed_supervisor_left(
    tmp_path: Path, upstream: McpUpstreamServer
) -> None:
    (tmp_path / "tmp").mkdir()
    first = serve(tmp_path, "first", upstream)
    second: GatewayServer | None = None
    try:
        assert first.process is not None
        supervisor = first.process.popen.pid
        [left] = metrics_dirs(tmp_path)
        assert left.name.startswith(f"{PREFIX}{supervisor}-"), left

        processes = pids_now(first)
        assert len(processes) == PROCESSES
        os.kill(supervisor, signal.SIGKILL)
        for pid in processes:
            os.kill(pid, signal.SIGKILL)
        assert first.process.popen.wait(TIMEOUT_S) == -signal.SIGKILL
        eventually(
            lambda: not processes & live_pids(),
            "the killed serve's processes gone",
        )
        assert left.is_dir()  # nobody removed it

        second = serve(tmp_path, "second", upstream)
        assert second.process is not None
        assert not left.exists(), second.log()
        [current] = metrics_dirs(tmp_path)
        assert current.name.startswith(f"{PREFIX}{second.process.popen.pid}-"), current
        assert "removed 1 metrics directory" in second.log()

        pinned = pinned_to_each(second, PROCESSES)
        for n, connection in enumerate(pinned.values()):
            for _ in range(n + 1):  # 1 call through one process, 2 through the other
                answer = connection.call("up__echo", {"text": "counted"})
                assert answer.status_code == 200, answer.text
        for pid, connection in pinned.items():
            assert connection.pid() == pid
            assert calls_counted(connection) == 3, pid
            connection.close()

        assert second.stop() == 0, second.log()[-3000:]
        assert metrics_dirs(tmp_path) == []
    finally:
        for server in (first, second):
            if server and server.process and server.process.popen.poll() is None:
                server.process.kill()


def live_pids() -> set[int]:
    """The pids of processes that run (a zombie has ended)."""
    live = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            live.add(int(stat.parent.name))
    return live
