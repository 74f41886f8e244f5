"""A call's transport read timeout outlasts its deadline (`mcp_requests.run` and the
connection's request hook): a response stream that stays silent as long as its call may
take — a held ``tasks/result`` waiting for a person's answer — must end that call with
its own timeout, never time the read out, which would end the whole connection."""

from __future__ import annotations

import httpx2
import pytest

from gateway.upstreams.mcp_requests import READ_MARGIN_S, apply_call_headers, run

pytestmark = pytest.mark.anyio

# The connection's own timeouts, as `McpConnection` builds them for a 30 s upstream.
CONNECTION = httpx2.Timeout(90.0, connect=10.0)


async def _sent(timeout_s: float) -> httpx2.Request:
    """The request a call with deadline ``timeout_s`` sends, after the hook."""
    http = httpx2.AsyncClient(timeout=CONNECTION)
    request = http.build_request("POST", "http://upstream.invalid/mcp", json={})

    async def send() -> httpx2.Request:
        await apply_call_headers(request)
        return request

    try:
        return await run(
            "up",
            "tasks/result",
            send,
            headers={"authorization": "Bearer t"},
            log_sink=None,
            timeout_s=timeout_s,
            mark_broken=lambda exc: None,
        )
    finally:
        await http.aclose()


async def test_a_long_call_reads_for_longer_than_its_deadline() -> None:
    request = await _sent(600.0)
    assert request.extensions["timeout"]["read"] == 600.0 + READ_MARGIN_S
    assert request.extensions["timeout"]["connect"] == 10.0  # the rest as configured
    assert request.headers["authorization"] == "Bearer t"


async def test_a_call_within_the_connections_read_timeout_keeps_it() -> None:
    request = await _sent(30.0)
    assert request.extensions["timeout"]["read"] == 90.0


async def test_outside_a_call_the_connections_timeouts_apply() -> None:
    http = httpx2.AsyncClient(timeout=CONNECTION)
    request = http.build_request("GET", "http://upstream.invalid/mcp")
    await apply_call_headers(request)
    assert request.extensions["timeout"]["read"] == 90.0
    await http.aclose()
