"""A loopback webhook receiver (Starlette under uvicorn, in a thread) that records
every JSON body POSTed to it, for tests of the gateway's notifications."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.processes import free_port
from tests.support.waiting import eventually


class WebhookReceiver:
    def __init__(self, *, status_code: int = 200) -> None:
        self.port = free_port()
        self.bodies: list[Any] = []
        self._status_code = status_code
        self._lock = threading.Lock()

        async def hook(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.bodies.append(body)
            return JSONResponse({"ok": True}, status_code=self._status_code)

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        eventually(lambda: self._server.started, "the webhook receiver started")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def wait_for(self, count: int) -> list[Any]:
        """The bodies received, once there are at least ``count``."""

        def received() -> list[Any] | None:
            with self._lock:
                return list(self.bodies) if len(self.bodies) >= count else None

        return eventually(received, f"{count} webhook calls")
