"""Tracing off (no ``tracing.endpoint``): a caller's trace context changes nothing.
No span, no trace id in the audit log, and nothing passed on to the upstream — the
gateway is then no participant in the trace (gateway/telemetry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway import telemetry
from gateway.app import build_app
from gateway.config import parse_config
from gateway.surfaces.mcp import META_KEY
from gateway.surfaces.tracing import TracingMiddleware
from tests.support.processes import read_calls
from tests.support.tracing import TRACEPARENT, Gateway, gateway_config, recording_upstreams


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with recording_upstreams(tmp_path_factory.mktemp("upstreams")) as running:
        yield running


def test_tracing_off_sends_nothing_records_nothing(
    tmp_path: Path, upstreams: dict[str, Any]
) -> None:
    assert not telemetry.enabled()
    server = gateway_config(tmp_path, upstreams)
    app = build_app(parse_config(server.config, source="test"))
    assert all(m.cls is not TracingMiddleware for m in app.user_middleware)
    with TestClient(app, base_url=server.url) as client:
        gateway = Gateway(server, client)
        result = gateway.mcp_call(
            "up__echo",
            {"text": "x"},
            meta={"traceparent": TRACEPARENT},
            headers={"traceparent": TRACEPARENT},
        )
        request_id = result["_meta"][META_KEY]["request_id"]
        assert "trace_id" not in gateway.attempt(request_id)
    sent = read_calls(upstreams["mcp"].call_log)[-1]
    assert sent["traceparent"] is None
    assert "traceparent" not in sent["meta"]
