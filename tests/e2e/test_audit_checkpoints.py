"""A running gateway signs checkpoints of its audit log, serves them, and publishes them
outside the database; each one verifies against the published key."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.audit import parse_keys
from gateway.tlog.note import verify_note
from tests.e2e.conftest import GRANTS
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually


def test_checkpoints_are_signed_served_and_published(
    tmp_path: Path, mcp_upstream: McpUpstreamServer
) -> None:
    server = GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy=write_policy(tmp_path, GRANTS),
    )
    server.config["audit"].update({"checkpoint_every_entries": 5, "checkpoint_every_s": 0.5})
    server.start()
    try:
        for i in range(4):
            response = httpx.post(
                f"{server.url}/v1/tools/up__echo/call",
                headers=server.headers(),
                json={"arguments": {"text": f"c{i}"}},
                timeout=10,
            )
            assert response.status_code == 200

        def covering() -> str | None:
            served = httpx.get(server.url + "/v1/audit/checkpoint", timeout=30)
            if served.status_code == 200 and int(served.text.splitlines()[1]) >= 12:
                return served.text
            return None

        note = eventually(covering, "a checkpoint of at least 12 entries")
        assert note.splitlines()[0] == "test.gateway/audit"
        keys = parse_keys(httpx.get(server.url + "/v1/audit/keys", timeout=5).text)
        verify_note(note, [k.verifier for k in keys])
    finally:
        server.stop()
    published = tmp_path / "gw" / "var" / "checkpoints"  # data_dir "var", beside the config
    latest = (published / "latest").read_text()  # the final checkpoint, made at shutdown
    assert int(latest.splitlines()[1]) >= int(note.splitlines()[1])
    verify_note(latest, [k.verifier for k in keys])
    assert (published / note.splitlines()[1]).read_text() == note  # one file per checkpoint


def test_audit_search_finds_entries_with_verified_inclusion_proofs(
    tmp_path: Path, mcp_upstream: McpUpstreamServer
) -> None:
    import json as jsonlib
    import subprocess
    import sys

    from tests.support.processes import REPO

    server = GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy=write_policy(tmp_path, GRANTS),
    )
    server.config["audit"].update({"checkpoint_every_entries": 1000, "checkpoint_every_s": 60})
    server.start()
    request_ids = []
    try:
        for sub in ("agent:alice", "agent:bob"):
            response = httpx.post(
                f"{server.url}/v1/tools/up__echo/call",
                headers=server.headers(sub=sub),
                json={"arguments": {"text": sub}},
                timeout=10,
            )
            request_ids.append(response.json()["request_id"])
    finally:
        server.stop()  # the final checkpoint covers every entry

    def search(*args: str) -> list[dict]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "audit",
                "search",
                "--json",
                "--config",
                str(server.config_path),
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=True,
        )
        return [jsonlib.loads(line) for line in result.stdout.splitlines()]

    bob = search("--principal", "agent:bob", "--kind", "call.attempt")
    assert [row["ref"] for row in bob] == [request_ids[1]]
    assert bob[0]["proof"].startswith("included in checkpoint") and "verified" in bob[0]["proof"]
    assert bob[0]["receipt"].startswith("c2sp.org/tlog-proof@v1")

    by_ref = search("--ref", request_ids[0])
    assert [row["kind"] for row in by_ref] == ["call.attempt", "call.decision", "call.outcome"]
    assert search("--since", "2999-01-01T00:00:00Z") == []
    assert search("--tool", "up__echo", "--until", "2000-01-01T00:00:00Z") == []
