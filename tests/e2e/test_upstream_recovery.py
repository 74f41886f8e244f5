"""Upstream connections are kept for the gateway's lifetime and re-established after
the upstream dies: here, the stdio server process is killed under the gateway."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    GatewayServer,
    read_calls,
    stdio_upstream_command,
    write_policy,
)
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def stdio_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, Path]]:
    workdir = tmp_path_factory.mktemp("recovery")
    call_log = workdir / "stdio.calls.jsonl"
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[
            {
                "name": "local",
                "transport": "stdio",
                "command": stdio_upstream_command(call_log),
                "timeout_s": 5,
            }
        ],
        policy=write_policy(workdir, [{"role": "agent", "tool": "local__*"}]),
    ).start()
    yield server, call_log
    server.stop()


def _echo(gateway: GatewayServer, text: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/local__echo/call",
        headers=gateway.headers(),
        json={"arguments": {"text": text}},
        timeout=15,
    )


def test_a_killed_stdio_upstream_is_restarted_and_used_again(stdio_gateway) -> None:
    gateway, call_log = stdio_gateway
    assert _echo(gateway, "before").status_code == 200
    first_pid = read_calls(call_log)[-1]["pid"]

    os.kill(first_pid, signal.SIGKILL)

    failed = _echo(gateway, "while down")  # the dead pipe is noticed by this call
    assert failed.status_code in (200, 502), failed.text

    def served() -> httpx.Response | None:
        response = _echo(gateway, "after")
        if response.status_code == 200:
            return response
        assert response.json()["error"]["code"] in ("upstream_unavailable", "upstream_error")
        return None

    response = eventually(served, "a call served by a restarted upstream", interval_s=0.2)
    assert response.json()["result"]["content"][0]["text"] == "after"
    new_pid = read_calls(call_log)[-1]["pid"]
    assert new_pid != first_pid  # served by a freshly started server process

    ready = httpx.get(gateway.url + "/readyz").json()
    assert ready["upstreams"]["local"]["connected"] is True
