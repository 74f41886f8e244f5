"""The lean ``tools/call`` forward against a real SDK upstream over loopback: what it
sends is what the SDK would send, what it cannot do goes through the SDK, and a call
is never sent twice, even when the upstream dies under it."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from gateway.config import McpHttpUpstream
from gateway.errors import UpstreamUnavailable
from gateway.upstreams.mcp_client import McpUpstream
from tests.support.processes import McpUpstreamServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

LEAN_USER_AGENT = "agent-gateway"


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[McpUpstream]:
    # Generous limits: no test here is about them, and a busy machine must not hit them.
    config = McpHttpUpstream.model_validate({"name": "up", "url": url, "timeout_s": 60})
    upstream = McpUpstream(config, static_headers={"X-Static": "yes"}, connect_timeout_s=30)

    async def reconnected(name: str) -> None:
        await upstream.list_tools()

    async with anyio.create_task_group() as tasks:
        await upstream.start(tasks, reconnected)
        await upstream.list_tools()  # as the catalog does: teaches the Mcp-Param headers
        try:
            yield upstream
        finally:
            await upstream.close()


async def call(upstream: McpUpstream, tool: str, arguments: dict, **kwargs):  # type: ignore[no-untyped-def]
    return await upstream.call_tool(
        tool,
        arguments,
        headers=kwargs.pop("headers", {"Authorization": "Bearer minted"}),
        idempotency_key=kwargs.pop("idempotency_key", None),
        progress=kwargs.pop("progress", None),
        log=kwargs.pop("log", None),
        timeout_s=kwargs.pop("timeout_s", 60),
    )


@pytest.fixture
def upstream_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = McpUpstreamServer.start(tmp_path)
    yield server
    server.process.stop()


async def test_a_call_goes_out_lean_with_the_sdks_headers_and_envelope(
    upstream_server: McpUpstreamServer,
) -> None:
    async with connected(upstream_server.url) as upstream:
        result = await call(upstream, "whoami", {}, idempotency_key="step-1")
    seen = result.structured_content
    assert seen is not None
    assert seen["user_agent"] == LEAN_USER_AGENT  # not the SDK's httpx client
    assert seen["authorization"] == "Bearer minted"
    assert seen["meta"]["io.agentgateway/idempotency-key"] == "step-1"
    assert seen["meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert result.is_error is False
    assert "_meta" not in result.to_dict()["content"][0]


async def test_declared_arguments_are_mirrored_into_mcp_param_headers(
    upstream_server: McpUpstreamServer,
) -> None:
    async with connected(upstream_server.url) as upstream:
        result = await call(upstream, "regional", {"region": "eu-west"})
    assert result.content[0]["text"] == "served in eu-west"
    (seen,) = upstream_server.calls()
    assert seen["user_agent"] == LEAN_USER_AGENT  # the upstream accepted the lean request
    assert {k.lower(): v for k, v in seen["param_headers"].items()} == {
        "mcp-param-region": "eu-west"
    }


async def test_a_call_that_wants_progress_goes_through_the_sdk(
    upstream_server: McpUpstreamServer,
) -> None:
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    async with connected(upstream_server.url) as upstream:
        result = await call(upstream, "slow", {"seconds": 0.3}, progress=progress)
    assert result.is_error is False
    assert seen == [1, 2, 3]


async def test_a_tool_error_is_a_result_and_is_not_retried(
    upstream_server: McpUpstreamServer,
) -> None:
    async with connected(upstream_server.url) as upstream:
        failed = await call(upstream, "fail", {})
        still = await call(upstream, "echo", {"text": "fine"})
    assert failed.is_error is True
    assert still.content[0]["text"] == "fine"
    assert [c["tool"] for c in upstream_server.calls()] == ["fail", "echo"]


async def test_idle_connections_closed_by_a_restarted_upstream_are_not_reused(
    tmp_path: Path,
) -> None:
    first = McpUpstreamServer.start(tmp_path)
    try:
        async with connected(first.url) as upstream:
            assert (await call(upstream, "echo", {"text": "one"})).is_error is False
            first.process.stop()  # closes the idle keep-alive connection
            (tmp_path / "second").mkdir()
            second = McpUpstreamServer.start(tmp_path / "second", port=first.port)
            try:
                # The dead connection is dropped before use, so this call reaches the
                # new process instead of failing on a closed socket.
                result = await call(upstream, "echo", {"text": "two"})
                assert result.content[0]["text"] == "two"
                assert [c["arguments"]["text"] for c in second.calls()] == ["two"]
            finally:
                second.process.stop()
    finally:
        first.process.stop()


async def test_an_upstream_killed_mid_call_fails_the_call_and_it_is_never_resent(
    tmp_path: Path,
) -> None:
    server = McpUpstreamServer.start(tmp_path)
    try:
        async with connected(server.url) as upstream:
            assert (await call(upstream, "echo", {"text": "warm"})).is_error is False

            async def kill_when_running() -> None:
                await eventually_async(  # the call log is a file: polled
                    lambda: [c for c in server.calls() if c["tool"] == "effect"],
                    "the effect call at the upstream",
                )
                os.kill(server.process.popen.pid, signal.SIGKILL)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(kill_when_running)
                with pytest.raises(UpstreamUnavailable):
                    # Longer than the call may last: only the kill can end it.
                    await call(upstream, "effect", {"label": "once", "delay_s": 300})
        effects = [c for c in server.calls() if c["tool"] == "effect"]
        assert len(effects) == 1  # ran once, and not sent again on another connection
    finally:
        server.process.stop()
