"""What the audit log holds after real calls: attempt and decision before forwarding,
outcome after, redacted arguments, and a hash chain that re-verifies."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from gateway.audit import read_entries, verify_chain
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer
from tests.support.waiting import eventually


def entries_for(database, ref: str, count: int):
    """The entries of one request, once `count` of them are committed: the outcome is
    appended after the response (docs/decisions/0005)."""

    def committed() -> list | None:
        entries = read_entries(database, ref=ref)
        return entries if len(entries) >= count else None

    return eventually(committed, f"{count} entries of {ref}")


def call(gateway: GatewayServer, tool: str, arguments: dict, **token: object) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": arguments},
        headers=gateway.headers(**token),
        timeout=10,
    )


def test_allowed_call_leaves_attempt_decision_outcome_and_the_chain_verifies(
    gateway: GatewayServer, database
) -> None:
    response = call(
        gateway, "up__echo", {"text": "audited"}, sub="agent:auditee", act=("user:bob",)
    )
    assert response.status_code == 200
    request_id = response.json()["request_id"]

    entries = entries_for(database, request_id, 3)
    assert [e.kind for e in entries] == ["call.attempt", "call.decision", "call.outcome"]
    attempt, decision, outcome = (e.payload for e in entries)
    assert attempt["principal"]["sub"] == "agent:auditee"
    assert attempt["principal"]["act_chain"] == [{"sub": "user:bob"}]
    assert attempt["arguments"] == {"text": "audited"}
    assert decision["decision"]["allow"] is True
    assert decision["decision"]["engine"] == "embedded"
    assert decision["decision"]["revision"].startswith("sha256:")
    assert decision["input"]["resource"]["tool"] == "up__echo"
    assert outcome["status"] == "ok" and outcome["is_error"] is False
    # The attempt and decision were appended together, before the outcome.
    assert entries[1].seq == entries[0].seq + 1 < entries[2].seq

    verify_chain(read_entries(database), "test.gateway/audit")


def test_denied_call_has_attempt_and_decision_but_no_outcome(
    gateway: GatewayServer, database, mcp_upstream: McpUpstreamServer
) -> None:
    response = call(gateway, "up__write", {"key": "k", "value": "v"})
    assert response.status_code == 403
    kinds = [e.kind for e in read_entries(database, ref=response.json()["request_id"])]
    assert kinds == ["call.attempt", "call.decision"]


def test_secret_arguments_are_redacted_everywhere_but_reach_the_upstream(
    gateway: GatewayServer, database, mcp_upstream: McpUpstreamServer
) -> None:
    response = call(gateway, "up__login", {"user": "ann", "api_key": "sk-live-123"})
    assert response.status_code == 200
    entries = entries_for(database, response.json()["request_id"], 3)
    stored = json.dumps([e.payload for e in entries])
    assert "sk-live-123" not in stored
    assert entries[0].payload["arguments"] == {"user": "ann", "api_key": "[redacted]"}
    assert entries[0].payload["redacted"] == ["/arguments/api_key"]
    assert entries[1].payload["input"]["arguments"]["api_key"] == "[redacted]"
    # The upstream still gets the real value: redaction is about records, not calls.
    assert {"user": "ann", "api_key": "sk-live-123"} in [
        c["arguments"] for c in mcp_upstream.calls()
    ]


def test_audit_tail_command_prints_the_newest_entries(gateway: GatewayServer, database) -> None:
    response = call(gateway, "up__echo", {"text": "tail me"})
    entries_for(database, response.json()["request_id"], 3)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "audit",
            "tail",
            "-n",
            "3",
            "--json",
            "--config",
            str(gateway.config_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in rows] == ["call.attempt", "call.decision", "call.outcome"]
    assert rows[0]["payload"]["arguments"] == {"text": "tail me"}
    assert rows[0]["seq"] + 2 == rows[2]["seq"]
