"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.metrics import exposition
from gateway.policy import PolicyEngine
from gateway.upstreams.catalog import Catalog

Check = Callable[[], Awaitable[None]]


class Health:
    def __init__(self, *, policy: PolicyEngine, database_check: Check, catalog: Catalog) -> None:
        self._policy = policy
        self._database_check = database_check
        self._catalog = catalog

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when policy and database work. Upstreams are reported, not required:
        one broken upstream must not take every other tool out of service. What it
        says is of the process that answered: ``process`` names it (its pid), one of
        several under `gateway serve --processes N` (docs/operations.md, Capacity)."""
        checks: dict[str, dict[str, object]] = {}
        try:
            with anyio.fail_after(2):
                policy_ok = await self._policy.ready()
            checks["policy"] = {
                "ok": policy_ok,
                "engine": self._policy.name,
                "revision": self._policy.revision,
            }
        except Exception as exc:  # readiness reports failures, it does not raise them
            checks["policy"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        try:
            with anyio.fail_after(2):
                await self._database_check()
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        upstreams = {
            name: {"connected": status.connected, "detail": status.detail}
            for name, status in self._catalog.upstream_status().items()
        }
        ready = all(bool(c["ok"]) for c in checks.values())
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "checks": checks,
                "upstreams": upstreams,
                "process": {"pid": os.getpid()},
            },
            status_code=200 if ready else 503,
        )

    async def metrics(self, request: Request) -> Response:
        """This process's metrics; under `gateway serve --processes N` the whole serve's
        (gateway.metrics)."""
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
