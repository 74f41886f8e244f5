"""Policies in production, end to end: a real gateway process reloads its embedded
policy on file change and on SIGHUP, keeps the old policy when the new one does not
compile or fails its conformance cases, and refuses to start on a policy that fails
its cases (under `enforce`)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from gateway.audit import AuditEntry, read_entries
from gateway.store import create_engine
from tests.support.fixture_policy import write_fixture_data, write_fixture_policy
from tests.support.opa import OpaServer
from tests.support.processes import GatewayServer, McpUpstreamServer
from tests.support.waiting import eventually

ECHO = {"role": "agent", "tool": "up__echo"}
WHOAMI = {"role": "agent", "tool": "up__whoami"}
WHOAMI_CASE = {
    "name": "whoami stays allowed",
    "input": {
        "version": 1,
        "subject": {"sub": "agent:case", "roles": ["agent"], "act_chain": []},
        "action": "tools/call",
        "resource": {"tool": "up__whoami"},
        "arguments": {},
        "context": {},
    },
    "expected": {
        "allow": True,
        "require_approval": False,
        "reasons": ["allowed by grant"],
        "obligations": {"redact": [], "approvers": []},
        "rule": "grant",
    },
}


def policy_with_cases(directory: Path, grants: list[dict[str, Any]]) -> Path:
    policy = write_fixture_policy(directory, grants)
    (policy / "conformance").mkdir(exist_ok=True)
    (policy / "conformance" / "cases.json").write_text(json.dumps({"cases": [WHOAMI_CASE]}))
    return policy


def configure(
    directory: Path, upstream: McpUpstreamServer, policy: Path, **settings: Any
) -> GatewayServer:
    return GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 5}],
        policy_config={"path": str(policy), **settings},
    )


def status(gateway: GatewayServer, tool: str, arguments: dict[str, Any] | None = None) -> int:
    response = httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": arguments if arguments is not None else {}},
        headers=gateway.headers(),
        timeout=10,
    )
    return response.status_code


def readyz(gateway: GatewayServer) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/readyz", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def revision(gateway: GatewayServer) -> str:
    return str(readyz(gateway)["checks"]["policy"]["revision"])


@pytest.fixture
def database() -> Iterator[Callable[[GatewayServer], Engine]]:
    engines: list[Engine] = []

    def open_for(gateway: GatewayServer) -> Engine:
        engines.append(create_engine(gateway.config["storage"]["url"]))
        return engines[-1]

    yield open_for
    for engine in engines:
        engine.dispose()


def entries(database: Engine, kind: str) -> list[AuditEntry]:
    return read_entries(database, kind=kind)


def test_file_changes_reload_and_bad_policies_keep_the_old_one(
    workdir: Path, mcp_upstream: McpUpstreamServer, database: Callable[[GatewayServer], Engine]
) -> None:
    policy = policy_with_cases(workdir / "watched-policy", [ECHO, WHOAMI])
    gateway = configure(
        workdir / "watched", mcp_upstream, policy, watch=True, watch_interval_s=0.1
    ).start()
    db = database(gateway)
    try:
        assert status(gateway, "up__echo", {"text": "hi"}) == 200
        first = revision(gateway)
        [started] = entries(db, "policy.loaded")
        assert started.payload is not None
        assert (started.payload["revision"], started.payload["trigger"]) == (first, "start")
        assert started.payload["conformance"] == {
            "mode": "enforce",
            "cases": 1,
            "passed": 1,
            "remembered": False,
        }

        # An edit that denies a tool: calls are denied once the watcher loaded it.
        write_fixture_data(policy, [WHOAMI])
        eventually(lambda: status(gateway, "up__echo", {"text": "hi"}) == 403, "echo denied")
        second = revision(gateway)
        assert second != first
        loaded = entries(db, "policy.loaded")[-1].payload
        assert loaded is not None
        assert (loaded["revision"], loaded["previous_revision"]) == (second, first)
        assert loaded["trigger"] == "watch"

        # A module that does not compile: rejected, recorded, the old policy serves on.
        (policy / "gateway" / "broken.rego").write_text("package gateway\n\nnot rego at all {\n")
        eventually(lambda: len(entries(db, "policy.rejected")) == 1, "policy.rejected")
        rejected = entries(db, "policy.rejected")[0].payload
        assert rejected is not None
        assert rejected["previous_revision"] == second
        assert "does not compile" in rejected["error"]["message"]
        assert "gateway/broken.rego:" in rejected["error"]["message"]
        assert status(gateway, "up__echo", {"text": "hi"}) == 403
        assert status(gateway, "up__whoami") == 200
        ready = readyz(gateway)
        assert ready["status"] == "ready" and ready["checks"]["policy"]["revision"] == second

        # A change that breaks the policy's conformance case: rejected as well.
        (policy / "gateway" / "broken.rego").unlink()
        write_fixture_data(policy, [ECHO])
        eventually(lambda: len(entries(db, "policy.rejected")) == 2, "second rejection")
        rejected = entries(db, "policy.rejected")[1].payload
        assert rejected is not None
        assert rejected["error"]["code"] == "policy_conformance_failed"
        assert "whoami stays allowed" in rejected["error"]["message"]
        assert status(gateway, "up__whoami") == 200
        assert revision(gateway) == second

        # Fixed: accepted.
        write_fixture_data(policy, [ECHO, WHOAMI, {"role": "agent", "tool": "up__login"}])
        eventually(lambda: status(gateway, "up__echo", {"text": "hi"}) == 200, "echo allowed")
        assert status(gateway, "up__whoami") == 200
        assert [e.payload["trigger"] for e in entries(db, "policy.loaded") if e.payload] == [
            "start",
            "watch",
            "watch",
        ]
        assert len(entries(db, "policy.rejected")) == 2
    finally:
        gateway.stop()


def test_sighup_reloads_when_watching_is_off(
    workdir: Path, mcp_upstream: McpUpstreamServer, database: Callable[[GatewayServer], Engine]
) -> None:
    policy = policy_with_cases(workdir / "hup-policy", [ECHO, WHOAMI])
    gateway = configure(workdir / "hup", mcp_upstream, policy, watch=False).start()
    db = database(gateway)
    try:
        first = revision(gateway)
        write_fixture_data(policy, [WHOAMI])
        assert status(gateway, "up__echo", {"text": "hi"}) == 200
        assert revision(gateway) == first

        assert gateway.process is not None
        os.kill(gateway.process.popen.pid, signal.SIGHUP)
        eventually(lambda: status(gateway, "up__echo", {"text": "hi"}) == 403, "echo denied")
        loaded = entries(db, "policy.loaded")[-1].payload
        assert loaded is not None
        assert (loaded["trigger"], loaded["previous_revision"]) == ("sighup", first)
        assert loaded["revision"] == revision(gateway)

        # A broken policy on SIGHUP: rejected, and the process serves on.
        (policy / "gateway" / "broken.rego").write_text("package gateway\n\n{{{\n")
        os.kill(gateway.process.popen.pid, signal.SIGHUP)
        eventually(lambda: len(entries(db, "policy.rejected")) == 1, "policy.rejected")
        assert status(gateway, "up__whoami") == 200
        assert gateway.process.popen.poll() is None
        # Not watching: only the signals reloaded, nothing on its own, though both
        # edits waited on disk for a while (whether a watcher would have got there
        # first is a race; that no load or rejection ever says "watch" is not).
        triggers = [e.payload["trigger"] for e in entries(db, "policy.loaded") if e.payload]
        assert triggers == ["start", "sighup"]
        [rejected] = entries(db, "policy.rejected")
        assert rejected.payload is not None and rejected.payload["trigger"] == "sighup"
    finally:
        gateway.stop()


def test_start_is_refused_when_the_policy_fails_its_cases_under_enforce(
    workdir: Path, mcp_upstream: McpUpstreamServer, database: Callable[[GatewayServer], Engine]
) -> None:
    policy = policy_with_cases(workdir / "failing-policy", [ECHO])  # the case wants whoami
    gateway = configure(workdir / "refused", mcp_upstream, policy)
    with pytest.raises(RuntimeError) as caught:
        gateway.start()
    assert gateway.process is not None and gateway.process.popen.returncode not in (0, None)
    log = gateway.log()
    assert "whoami stays allowed" in log and "conformance" in log
    # The upstream connects while the cases run; the refusal still reads as itself.
    assert "ExceptionGroup" not in log
    assert "process exited" in str(caught.value)
    [rejected] = entries(database(gateway), "policy.rejected")
    assert rejected.payload is not None and rejected.payload["trigger"] == "start"


def test_start_goes_ahead_with_a_warning_under_warn(
    workdir: Path, mcp_upstream: McpUpstreamServer
) -> None:
    policy = policy_with_cases(workdir / "warned-policy", [ECHO])
    gateway = configure(
        workdir / "warned", mcp_upstream, policy, conformance={"on_start": "warn"}
    ).start()
    try:
        assert readyz(gateway)["status"] == "ready"
        assert status(gateway, "up__whoami") == 403
        assert "whoami stays allowed" in gateway.log()
    finally:
        gateway.stop()


def test_an_opa_policy_is_checked_against_the_opa_server_at_start(
    workdir: Path, mcp_upstream: McpUpstreamServer, database: Callable[[GatewayServer], Engine]
) -> None:
    passing = policy_with_cases(workdir / "opa-passing", [ECHO, WHOAMI])
    failing = policy_with_cases(workdir / "opa-failing", [ECHO])
    for policy in (passing, failing):
        # OPA serves the modules and data; the cases stay with the gateway.
        opa = OpaServer(
            [policy / "gateway", policy / "data.json"], workdir / f"{policy.name}.opa.log"
        ).start()
        gateway = GatewayServer.configure(
            workdir / f"{policy.name}-gateway",
            upstreams=[{"name": "up", "url": mcp_upstream.url, "timeout_s": 5}],
            policy_config={"engine": "opa", "url": opa.url, "path": str(policy)},
        )
        try:
            if policy is failing:
                with pytest.raises(RuntimeError):
                    gateway.start()
                assert "whoami stays allowed" in gateway.log()
                continue
            gateway.start()
            assert status(gateway, "up__whoami") == 200
            [loaded] = entries(database(gateway), "policy.loaded")
            assert loaded.payload is not None
            assert loaded.payload["engine"] == "opa" and loaded.payload["trigger"] == "start"
            assert loaded.payload["conformance"] == {
                "mode": "enforce",
                "cases": 1,
                "passed": 1,
                "remembered": False,
            }
        finally:
            if gateway.process is not None:
                gateway.process.stop()
            opa.stop()
