"""Stdio upstream processes started ahead of the gateway's start (gateway.upstreams.
mcp_stdio, docs/decisions/0037): the connection takes the process started for it, and
every process ends as a stdio upstream's always did — with its connection, when the
start fails first, or when no connection wants it.

The upstream is the demo server, a real process over the SDK's real stdio transport;
each test finds its processes by a marker in their environment."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from gateway.config import McpStdioUpstream
from gateway.errors import UpstreamError
from gateway.upstreams.mcp_connection import McpConnection, Route
from gateway.upstreams.mcp_stdio import StdioStarts, started_ahead, stdio_parameters
from tests.support.processes import REPO, processes_with_env
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

MARKER = "GATEWAY_TEST_STDIO_MARKER"


def _upstream(tmp_path: Path, **env: str) -> tuple[McpStdioUpstream, str]:
    marker = uuid.uuid4().hex
    config = McpStdioUpstream(
        name="demo",
        transport="stdio",
        command=[sys.executable, "-m", "gateway.demo.server"],
        env={
            MARKER: marker,
            "GATEWAY_DEMO_SANDBOX": str(tmp_path),
            "PYTHONPATH": str(REPO),
            **env,
        },
    )
    return config, marker


def _running(marker: str) -> set[int]:
    return processes_with_env(MARKER, marker)


async def _started(marker: str, count: int = 1) -> set[int]:
    """The upstream processes, once ``count`` of them show ``marker``: a process shows
    its environment only once it has executed its program, which a loaded machine may
    delay past the moment its spawn returned."""

    def seen() -> set[int] | None:
        running = _running(marker)
        return running if len(running) == count else None

    return await eventually_async(seen, f"{count} upstream process(es) running")


async def _none_left(marker: str) -> None:
    await eventually_async(lambda: not _running(marker), "every upstream process ended")


@asynccontextmanager
async def _connected(config: McpStdioUpstream, stdio: StdioStarts) -> AsyncIterator[McpConnection]:
    async def reconnected(name: str) -> None:
        pass

    async def resubscribe(route: Route) -> None:
        pass

    connection = McpConnection(config, static_headers={}, connect_timeout_s=30, stdio=stdio)
    async with anyio.create_task_group() as tasks:
        await connection.start(tasks, reconnected, None, resubscribe)
        try:
            yield connection
        finally:
            connection.close()


async def test_the_connection_takes_the_process_started_for_it(tmp_path: Path) -> None:
    config, marker = _upstream(tmp_path)
    async with started_ahead([("demo", stdio_parameters(config, {}))]) as starts:
        (ahead,) = await _started(marker)
        async with _connected(config, starts) as connection:
            assert connection.status.connected, connection.status.detail
            client = await connection.connected()
            tools = await client.list_tools()
            assert "echo" in {t.name for t in tools.tools}
            assert _running(marker) == {ahead}  # no second process
        # Closing the connection ended its process, as it ends any stdio upstream's.
        assert ahead not in _running(marker)
    await _none_left(marker)


async def test_a_process_no_connection_took_is_ended_with_the_block(tmp_path: Path) -> None:
    config, marker = _upstream(tmp_path)
    async with started_ahead([("demo", stdio_parameters(config, {}))]):
        await _started(marker)
    await _none_left(marker)


async def test_a_start_that_fails_after_it_leaves_no_process(tmp_path: Path) -> None:
    config, marker = _upstream(tmp_path)
    with pytest.raises(RuntimeError, match="the build failed"):
        async with started_ahead([("demo", stdio_parameters(config, {}))]):
            await _started(marker)
            raise RuntimeError("the build failed")
    await _none_left(marker)


async def test_a_reconnect_starts_a_new_process(tmp_path: Path) -> None:
    config, marker = _upstream(tmp_path)
    async with started_ahead([("demo", stdio_parameters(config, {}))]) as starts:
        (ahead,) = await _started(marker)
        async with _connected(config, starts) as connection:
            client = await connection.connected()
            os.kill(ahead, signal.SIGKILL)
            # A broken connection is noticed when it is used (the catalog's refresh).
            with pytest.raises(UpstreamError):
                await connection.request(
                    "tools/list", client.list_tools, headers={}, log=None, timeout_s=30
                )
            await eventually_async(
                lambda: connection.connections == 2 and connection.status.connected,
                "reconnected",
            )
            (again,) = _running(marker)
            assert again != ahead
    await _none_left(marker)


async def test_a_process_started_with_other_parameters_is_not_taken(tmp_path: Path) -> None:
    config, marker = _upstream(tmp_path)
    other = stdio_parameters(config, {"GATEWAY_UPSTREAM_CREDENTIAL": "not what it gets"})
    async with started_ahead([("demo", other)]) as starts:
        (ahead,) = await _started(marker)
        async with _connected(config, starts) as connection:
            assert connection.status.connected, connection.status.detail
            await eventually_async(lambda: ahead not in _running(marker), "the other one ended")
            assert len(_running(marker)) == 1
    await _none_left(marker)


async def test_a_calling_sessions_own_connection_never_takes_it(tmp_path: Path) -> None:
    config, marker = _upstream(tmp_path)
    params = stdio_parameters(config, {})
    async with started_ahead([("demo", params)]) as starts:
        (ahead,) = await _started(marker)
        async with starts.transport(params, ahead_of=None):
            await _started(marker, 2)  # a process of its own
        async with starts.transport(params, ahead_of="demo"):
            assert _running(marker) == {ahead}
    await _none_left(marker)
