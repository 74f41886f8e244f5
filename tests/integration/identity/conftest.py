"""A real JWKS endpoint: a small Starlette app served by uvicorn on 127.0.0.1.

The server runs in its own thread and event loop, so it behaves like a remote IdP
to the code under test (real sockets, real HTTP), and it counts the requests it gets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from identity_jwks_server import JwksServer
from starlette.applications import Starlette
from starlette.routing import Route

from tests.support.waiting import eventually


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def _jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()
    app = Starlette(routes=[Route("/jwks", state.endpoint)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the test JWKS server did not start")
        return bool(server.started)

    eventually(started, "the test JWKS server started")
    yield state
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def jwks_server(_jwks_server: JwksServer) -> JwksServer:
    _jwks_server.reset()
    return _jwks_server


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks"
