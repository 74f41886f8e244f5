"""Hostile policies in a running gateway: a catastrophic regular expression over a
1 MiB argument, nested comprehensions that never finish, and a policy that allocates
until the memory cap. Each call is a clean deny that says why, and the gateway keeps
serving (the Wasm sandbox bounds every evaluation; gateway.policy.wasm)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.hostile_policy import HOSTILE
from tests.support.processes import GatewayServer, McpUpstreamServer

MIB = 1 << 20


@pytest.fixture
def gateway(tmp_path: Path, mcp_upstream: McpUpstreamServer) -> GatewayServer:
    policy = tmp_path / "policy"
    (policy / "gateway").mkdir(parents=True)
    (policy / "gateway" / "decision.rego").write_text(HOSTILE)
    return GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy_config={"path": str(policy), "timeout_ms": 300, "memory_mb": 64},
        limits={"max_body_bytes": 4 * MIB},
    ).start()


def call(gateway: GatewayServer, kind: str, text: str = "") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/up__echo/call",
        headers=gateway.headers(),
        json={"arguments": {"kind": kind, "text": text}},
        timeout=60,
    )


def test_hostile_policies_are_refused_cleanly_and_the_gateway_keeps_serving(
    gateway: GatewayServer,
) -> None:
    try:
        backtracking = call(gateway, "regex", "a" * MIB + "!")
        assert backtracking.status_code == 403, backtracking.text
        assert backtracking.json()["decision"]["rule"] == "default_deny"

        # Which limit stops each first depends on the machine (OPA's Wasm allocates as
        # it iterates); tests/unit/policy/test_policy_sandbox.py pins each limit alone.
        # A limit reached while computing is the policy's own doing: a deny that says
        # so. Only an evaluation starved of CPU until its deadline (a busy machine) gave
        # no answer: 503, retry (ADR 0032). Neither is forwarded.
        for kind, text in [("spin", ""), ("alloc", "x" * MIB)]:
            refused = call(gateway, kind, text)
            if refused.status_code == 503:
                assert refused.headers["Retry-After"] == "1", refused.headers
                error = refused.json()["error"]
                assert error["code"] == "policy_unavailable", error
                assert "deadline of 300 ms after only" in error["message"], error
            else:
                assert refused.status_code == 403, refused.text
                decision = refused.json()["decision"]
                assert decision["rule"] == "gateway.fail_closed", decision
                reason = decision["reasons"][0]
                assert "300 ms" in reason or "memory cap of 64 MiB" in reason, reason

        fine = call(gateway, "fine", "still serving")
        assert fine.status_code == 200, fine.text
        assert gateway.process is not None and gateway.process.popen.poll() is None
    finally:
        gateway.stop()
