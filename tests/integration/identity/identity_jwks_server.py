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
    delay_s: float = 0.0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{self.base_url}/jwks"

    def reset(self) -> None:
        self.document, self.status, self.delay_s, self.requests = {"keys": []}, 200, 0.0, 0

    async def endpoint(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        if self.delay_s:
            await anyio.sleep(self.delay_s)  # keeps a fetch in flight to test coalescing
        if self.status != 200:
            return Response("IdP unavailable", status_code=self.status)
        return JSONResponse(self.document)
