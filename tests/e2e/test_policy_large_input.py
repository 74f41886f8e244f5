"""A policy that recurses per byte over a long argument: rego-cpp's regular
expressions overflowed the 8 MiB stack of the thread evaluating them (26,000 ASCII
characters of `regex.match("^[a-z]*$", …)`, 4,000 emoji of `^(.)*$`, killed the
process). An agent must not be able to take the gateway down by sending such an
argument: large inputs are evaluated on a thread with a large stack, one at a time,
and the gateway keeps serving."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.processes import GatewayServer, McpUpstreamServer

LOWERCASE_ONLY = """package gateway

import rego.v1

default decision := {
	"allow": false,
	"require_approval": false,
	"reasons": ["text has an exclamation mark"],
	"obligations": {"redact": [], "approvers": []},
	"rule": "default_deny",
}

# An anchored repetition: the shape that recursed once per character.
decision := {
	"allow": true,
	"require_approval": false,
	"reasons": ["allowed by grant"],
	"obligations": {"redact": [], "approvers": []},
	"rule": "grant",
} if {
	"agent" in input.subject.roles
	regex.match("^[^!]*$", input.arguments.text)
}
"""


@pytest.fixture
def gateway(tmp_path: Path, mcp_upstream: McpUpstreamServer) -> GatewayServer:
    policy = tmp_path / "policy"
    (policy / "gateway").mkdir(parents=True)
    (policy / "gateway" / "decision.rego").write_text(LOWERCASE_ONLY)
    return GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        # A 400,000-character decision takes ≈ 0.2 s alone: room for a loaded machine,
        # so that the test is about the process surviving, not about the deadline.
        policy_config={"path": str(policy), "timeout_ms": 10_000},
    ).start()


def call(gateway: GatewayServer, text: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/up__echo/call",
        headers=gateway.headers(),
        json={"arguments": {"text": text}},
        timeout=60,
    )


def test_a_long_argument_does_not_take_the_gateway_down(gateway: GatewayServer) -> None:
    try:
        allowed = call(gateway, "a" * 400_000)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["result"]["content"][0]["text"] == "a" * 400_000

        emoji = call(gateway, "😀" * 100_000)  # 400,000 bytes: the recursion is per byte
        assert emoji.status_code == 200, emoji.text

        denied = call(gateway, "a" * 399_999 + "!")
        assert denied.status_code == 403, denied.text
        assert denied.json()["decision"]["rule"] == "default_deny", denied.json()

        assert call(gateway, "still serving!").status_code == 403
        assert call(gateway, "still serving").status_code == 200
        assert gateway.process is not None and gateway.process.popen.poll() is None
    finally:
        gateway.stop()
