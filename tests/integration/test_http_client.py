"""The OPA engine's keep-alive HTTP client against a real OPA and raw loopback sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import pytest
from anyio.abc import SocketStream

from gateway.http_client import HttpConnectError, HttpTransportError, KeepAliveClient
from tests.support.opa import OpaServer
from tests.support.processes import free_port
from tests.support.waiting import TIMEOUT_S

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    directory = tmp_path_factory.mktemp("opa-http")
    server = OpaServer([], directory / "opa.log").start()
    yield server
    server.stop()


async def test_large_chunked_response_and_connection_reuse(opa: OpaServer) -> None:
    document = ["x" * 100] * 2000  # ≈ 200 kB: OPA answers with chunked encoding
    client = KeepAliveClient(opa.url)
    try:
        put = await client.request("PUT", "/v1/data/big", json.dumps(document).encode())
        assert put.status == 204
        for _ in range(3):
            got = await client.request("GET", "/v1/data/big")
            assert got.status == 200
            assert json.loads(got.body)["result"] == document
        assert len(client._idle) == 1  # one connection served every request
    finally:
        await client.aclose()


async def test_error_status_is_returned_not_raised(opa: OpaServer) -> None:
    client = KeepAliveClient(opa.url + "/")  # a trailing slash is not doubled
    try:
        response = await client.request("PUT", "/v1/policies/x.rego", b"not rego")
        assert response.status == 400
        assert json.loads(response.body)["code"] == "invalid_parameter"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"this is not HTTP\r\n\r\n", "malformed HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", "closed before the response"),
        (b"", "closed before the response"),
    ],
)
async def test_broken_answers_are_transport_errors(reply: bytes, message: str) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def answer(stream: SocketStream) -> None:
        async with stream:
            await stream.receive()
            if reply:
                await stream.send(reply)

    client = KeepAliveClient(f"http://127.0.0.1:{port}")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, answer)
        with pytest.raises(HttpTransportError, match=message), anyio.fail_after(TIMEOUT_S):
            await client.request("POST", "/v1/data/gateway/decision", b"{}")
        tasks.cancel_scope.cancel()
    await listener.aclose()
    await client.aclose()
    assert client._idle == []


async def test_refused_connection_is_a_connect_error() -> None:
    client = KeepAliveClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(HttpConnectError, match="connection refused"):
        await client.request("GET", "/health")
    await client.aclose()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        KeepAliveClient("unix:///run/opa.sock")
