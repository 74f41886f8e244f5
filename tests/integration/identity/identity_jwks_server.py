"""The state and endpoint of the test JWKS server (see conftest.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass
class JwksServer:
    base_url: str = ""
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    requests: int = 0
    # Cleared, answers wait until it is set again: keeps a fetch in flight for as long
    # as a test needs (coalescing), however slow the machine.
    answering: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.answering.set()

    @property
    def url(self) -> str:
        return f"{self.base_url}/jwks"

    def reset(self) -> None:
        self.document, self.status, self.requests = {"keys": []}, 200, 0
        self.answering.set()

    async def endpoint(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        await anyio.to_thread.run_sync(self.answering.wait)
        if self.status != 200:
            return Response("IdP unavailable", status_code=self.status)
        return JSONResponse(self.document)
