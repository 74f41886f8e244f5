"""The gateway with `policy.engine: opa`, deciding through a real OPA sidecar.

OPA serves the policy as a bundle with a known revision, on one fixed port, so the
tests can kill it, bring it back, or replace it with a slow policy while the gateway
keeps running, and check that every failure denies (fail closed) and that the gateway
recovers by itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.audit import read_entries
from gateway.types import UNAVAILABLE_RULE
from tests.support.gate import Gate
from tests.support.opa import OpaServer, opa_binary
from tests.support.processes import GatewayServer, McpUpstreamServer, free_port, write_policy
from tests.support.waiting import eventually

REVISION = "e2e-rev-1"
# Generous: a healthy OPA answers a real call within it on a busy machine; the slow
# sidecar (below) never answers before it.
TIMEOUT_MS = 5000
GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__whoami", "approval": {"approvers": ["role:approver"]}},
    # up__write: no grant, so every call to it is denied.
]

# Answers allow, but only once the test's gate lets its `http.send` through (at the end
# of the module): a sidecar that is up and healthy yet slower than the gateway's
# timeout, however fast the machine.
SLOW_POLICY = """package gateway

import rego.v1

decision := {"allow": true, "reasons": ["eventually"]} if {
	http.send({"method": "GET", "url": "%s", "timeout": "600s"}).status_code == 200
}
"""


class Sidecar:
    """OPA on one port for the whole module, (re)started as a test needs it."""

    def __init__(self, directory: Path, bundle: Path, slow: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._sources = {"bundle": ([bundle], ["--bundle"]), "slow": ([slow], [])}
        self.server: OpaServer | None = None
        self.serving: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, which: str) -> None:
        """Serves `which` ("bundle" or "slow"), restarting OPA unless it already does."""
        alive = self.server and self.server.process and self.server.process.popen.poll() is None
        if alive and self.serving == which:
            return
        self.kill()
        paths, extra = self._sources[which]
        log = self.directory / f"opa-{which}.log"
        self.server = OpaServer(paths, log, port=self.port, extra_args=extra).start()
        self.serving = which

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()
        self.serving = None

    def log(self) -> str:
        return "".join(p.read_text() for p in self.directory.glob("opa-*.log"))


@pytest.fixture(scope="module")
def sidecar(workdir: Path) -> Iterator[Sidecar]:
    policy = write_policy(workdir / "opa-policy", GRANTS)
    bundle = workdir / "bundle.tar.gz"
    subprocess.run(
        [opa_binary(), "build", "-b", str(policy), "--revision", REVISION, "-o", str(bundle)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    slow = workdir / "slow-policy"
    slow.mkdir()
    gate = Gate()
    (slow / "slow.rego").write_text(SLOW_POLICY % gate.url)
    server = Sidecar(workdir, bundle, slow)
    server.serve("bundle")
    yield server
    server.kill()
    gate.close()


@pytest.fixture(scope="module")
def gateway(
    workdir: Path, mcp_upstream: McpUpstreamServer, sidecar: Sidecar
) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        workdir / "gateway-opa",
        upstreams=[{"name": "up", "url": mcp_upstream.url, "timeout_s": 5}],
        policy_config={
            "engine": "opa",
            "url": sidecar.url,
            "timeout_ms": TIMEOUT_MS,
            "path": str(workdir / "opa-policy" / "policy"),
        },
    )
    # Approval holds are tested elsewhere; off, a call that needs approval is refused
    # at once with approval_required, which is all this module needs to see.
    server.config["approvals"] = {"enabled": False}
    server.start()
    yield server
    server.stop()


def call(gateway: GatewayServer, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": arguments},
        headers=gateway.headers(),
        timeout=30,
    )


def recorded_decision(database, request_id: str) -> dict[str, Any]:
    entries = [e for e in read_entries(database, ref=request_id) if e.kind == "call.decision"]
    assert len(entries) == 1, entries
    return entries[0].payload["decision"]


def test_allowed_call_is_forwarded_and_audited_with_opa_provenance(
    gateway: GatewayServer, sidecar: Sidecar, mcp_upstream: McpUpstreamServer, database
) -> None:
    sidecar.serve("bundle")
    before = len(mcp_upstream.calls())
    response = call(gateway, "up__echo", {"text": "via opa"})
    assert response.status_code == 200, response.text
    assert len(mcp_upstream.calls()) == before + 1

    decision = recorded_decision(database, response.json()["request_id"])
    assert decision["allow"] is True and decision["rule"] == "grant"
    assert decision["engine"] == "opa"
    assert decision["revision"] == REVISION
    assert isinstance(decision["decision_id"], str) and decision["decision_id"]
    # The id names the entry in OPA's own decision log.
    eventually(lambda: decision["decision_id"] in sidecar.log(), "the decision in OPA's log")


def test_denied_call_is_not_forwarded(
    gateway: GatewayServer, sidecar: Sidecar, mcp_upstream: McpUpstreamServer
) -> None:
    sidecar.serve("bundle")
    before = len(mcp_upstream.calls())
    response = call(gateway, "up__write", {"key": "k", "value": "v"})
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"]["code"] == "denied"
    assert body["decision"]["rule"] == "no_grant"
    assert body["decision"]["engine"] == "opa"
    assert len(mcp_upstream.calls()) == before


def test_approval_required_call_is_not_forwarded(
    gateway: GatewayServer, sidecar: Sidecar, mcp_upstream: McpUpstreamServer
) -> None:
    sidecar.serve("bundle")
    before = len(mcp_upstream.calls())
    response = call(gateway, "up__whoami", {})
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"]["code"] == "approval_required"
    assert body["decision"]["allow"] is True and body["decision"]["require_approval"] is True
    assert body["decision"]["obligations"]["approvers"] == ["role:approver"]
    assert body["decision"]["engine"] == "opa"
    assert len(mcp_upstream.calls()) == before


def test_opa_down_is_unavailable_not_a_denial_and_gateway_is_not_ready(
    gateway: GatewayServer, sidecar: Sidecar, mcp_upstream: McpUpstreamServer, database
) -> None:
    sidecar.serve("bundle")
    assert call(gateway, "up__echo", {"text": "warm"}).status_code == 200
    sidecar.kill()
    before = len(mcp_upstream.calls())

    # No answer is not a denial: 503, retry later (ADR 0032); nothing is forwarded.
    response = call(gateway, "up__echo", {"text": "while opa is down"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["error"]["code"] == "policy_unavailable"
    assert f"OPA at {sidecar.url} is unreachable" in body["error"]["message"]
    assert len(mcp_upstream.calls()) == before
    # The refusal is audited as unavailability, naming the engine.
    recorded = recorded_decision(database, body["request_id"])
    assert recorded["engine"] == "opa" and recorded["rule"] == UNAVAILABLE_RULE
    assert recorded["allow"] is False

    ready = httpx.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["policy"]["ok"] is False
    assert ready.json()["checks"]["policy"]["engine"] == "opa"


def test_gateway_recovers_when_opa_is_back(
    gateway: GatewayServer, sidecar: Sidecar, mcp_upstream: McpUpstreamServer
) -> None:
    sidecar.kill()
    assert call(gateway, "up__echo", {"text": "down"}).status_code == 503
    sidecar.serve("bundle")  # same port, as a restarted sidecar would be

    def allowed() -> httpx.Response | None:
        answer = call(gateway, "up__echo", {"text": "back"})
        return answer if answer.status_code == 200 else None

    response = eventually(allowed, "a call allowed again")
    assert response.json()["decision"]["revision"] == REVISION
    assert mcp_upstream.calls()[-1]["arguments"] == {"text": "back"}

    ready = httpx.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["policy"] == {"ok": True, "engine": "opa", "revision": REVISION}


def test_opa_slower_than_the_timeout_is_unavailable_not_a_denial(
    gateway: GatewayServer, sidecar: Sidecar, mcp_upstream: McpUpstreamServer, database
) -> None:
    sidecar.serve("slow")
    try:
        before = len(mcp_upstream.calls())
        # OPA never answers before the end of the module (the gate), so an answer at
        # all is the timeout's doing: no answer, so 503 and retry (ADR 0032).
        response = call(gateway, "up__echo", {"text": "too slow"})
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        body = response.json()
        assert body["error"]["code"] == "policy_unavailable"
        # The engine's own reason, or (event loop lagging past both deadlines) decide's.
        assert body["error"]["message"].split(";")[0] in (
            f"OPA at {sidecar.url} did not answer within {TIMEOUT_MS} ms",
            f"policy engine opa did not answer within {TIMEOUT_MS} ms",
        )
        assert recorded_decision(database, body["request_id"])["rule"] == UNAVAILABLE_RULE
        assert len(mcp_upstream.calls()) == before
        # Healthy but slow is still "ready": readiness is about reachability.
        assert httpx.get(gateway.url + "/readyz", timeout=5).status_code == 200
    finally:
        sidecar.serve("bundle")


def gateway_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_reports_opa_reachability(
    gateway: GatewayServer, sidecar: Sidecar, tmp_path: Path
) -> None:
    sidecar.serve("bundle")
    ok = gateway_cli("check-config", str(gateway.config_path))
    assert ok.returncode == 0, ok.stderr
    assert f"policy     opa {sidecar.url} (reachable; revision {REVISION})" in ok.stdout

    # A sidecar that is down does not make the file invalid: a warning, exit 0.
    config = yaml.safe_load(gateway.config_path.read_text())
    config["policy"]["url"] = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "opa-down.yaml"
    path.write_text(yaml.safe_dump(config))
    down = gateway_cli("check-config", str(path))
    assert down.returncode == 0, down.stderr
    assert "(not reachable)" in down.stdout
    assert "warning: OPA at" in down.stderr and "deny every call" in down.stderr


def test_policy_push_to_a_bundle_server_shows_opas_refusal(
    gateway: GatewayServer, sidecar: Sidecar
) -> None:
    # The config names the OPA URL and the policy folder; OPA refuses writes under a
    # bundle's roots, and the command says so in OPA's words.
    sidecar.serve("bundle")
    pushed = gateway_cli("policy", "push", "--config", str(gateway.config_path))
    assert pushed.returncode == 1, pushed.stdout
    assert f"gateway: error: OPA at {sidecar.url} refused" in pushed.stderr
    assert "bundle" in pushed.stderr
