"""``resources/read`` and ``prompts/get`` sent lean (docs/decisions/0026) against a real
SDK upstream over loopback: the same documents and the same errors as through the SDK's
client, and what the lean path cannot do (logs) goes through the SDK."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.config import McpHttpUpstream
from gateway.errors import UpstreamError, UpstreamRejected
from gateway.operations import LogSink
from gateway.upstreams.mcp_client import McpUpstream
from gateway.upstreams.mcp_lean_call import LeanToolCaller
from tests.support.processes import McpUpstreamServer

pytestmark = pytest.mark.anyio

HEADERS = {"Authorization": "Bearer minted"}


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[McpUpstream]:
    config = McpHttpUpstream.model_validate({"name": "up", "url": url, "timeout_s": 60})
    upstream = McpUpstream(config, static_headers={}, connect_timeout_s=30)

    async def reconnected(name: str) -> None:
        await upstream.list_tools()

    async with anyio.create_task_group() as tasks:
        await upstream.start(tasks, reconnected)
        await upstream.list_tools()
        try:
            yield upstream
        finally:
            await upstream.close()


@pytest.fixture
def upstream_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = McpUpstreamServer.start(tmp_path)
    yield server
    server.process.stop()


@pytest.fixture
def lean_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The method of every request sent lean."""
    sent: list[str] = []
    real = LeanToolCaller.request

    async def request(self: LeanToolCaller, method: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(method)
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(LeanToolCaller, "request", request)
    return sent


async def both_ways(
    upstream: McpUpstream, ask: Callable[[McpUpstream], Awaitable[Any]]
) -> tuple[Any, Any]:
    """What ``ask`` returns or raises sent lean, then through the SDK's client."""

    async def outcome() -> Any:
        try:
            return await ask(upstream)
        except UpstreamError as exc:
            return exc

    lean = await outcome()
    kept, upstream._lean = upstream._lean, None  # the SDK's client alone, as before 0026
    try:
        sdk = await outcome()
    finally:
        upstream._lean = kept
    return lean, sdk


def read(uri: str) -> Callable[[McpUpstream], Awaitable[Any]]:
    return lambda up: up.read_resource(uri, headers=HEADERS, log=None, timeout_s=60)


def prompt(name: str, arguments: dict[str, str]) -> Callable[[McpUpstream], Awaitable[Any]]:
    return lambda up: up.get_prompt(name, arguments, headers=HEADERS, log=None, timeout_s=60)


@pytest.mark.parametrize(
    "ask",
    [
        read("test://static"),
        read("test://items/7"),
        prompt("greet", {"name": "Ada"}),
        prompt("greet", {"name": "Ada", "style": "formal"}),
        prompt("plan", {"goal": "ship"}),
    ],
    ids=["resource", "template", "prompt", "prompt-arguments", "other-prompt"],
)
async def test_a_read_or_a_prompt_sent_lean_equals_the_sdks(
    upstream_server: McpUpstreamServer, lean_requests: list[str], ask: Any
) -> None:
    async with connected(upstream_server.url) as upstream:
        lean, sdk = await both_ways(upstream, ask)
    assert len(lean_requests) == 1  # the first went lean, the second did not
    assert lean == sdk
    assert not isinstance(lean, Exception)


@pytest.mark.parametrize(
    "ask",
    [read("test://nothing-here"), prompt("no_such_prompt", {}), prompt("greet", {})],
    ids=["unknown-resource", "unknown-prompt", "missing-argument"],
)
async def test_an_upstreams_refusal_is_the_same_error_either_way(
    upstream_server: McpUpstreamServer, lean_requests: list[str], ask: Any
) -> None:
    async with connected(upstream_server.url) as upstream:
        lean, sdk = await both_ways(upstream, ask)
    assert lean_requests, "the lean path was not taken"
    assert type(lean) is type(sdk)
    assert isinstance(lean, UpstreamError)
    assert lean.message == sdk.message
    if isinstance(lean, UpstreamRejected):
        assert (lean.rpc_code, lean.rpc_message, lean.rpc_data) == (
            sdk.rpc_code,
            sdk.rpc_message,
            sdk.rpc_data,
        )


async def test_a_read_that_wants_log_messages_goes_through_the_sdk(
    upstream_server: McpUpstreamServer, lean_requests: list[str]
) -> None:
    async def dropped(level: str, data: Any, logger: str | None) -> None:
        pass

    async with connected(upstream_server.url) as upstream:
        document = await upstream.read_resource(
            "test://static", headers=HEADERS, log=LogSink("debug", dropped), timeout_s=60
        )
    assert document["contents"][0]["text"] == "static contents"
    assert lean_requests == []
