"""The audit explorer's REST API on a running gateway: auditors find entries by filter and
get each with an inclusion proof that verifies offline against the published key;
everyone else is refused; bad parameters are 400s; an erased payload and entries
tampered with in the database (triggers dropped, as someone with an SQL shell could)
are shown as such."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.audit import leaf_hash, parse_keys, verify_inclusion, verify_note, verify_receipt
from gateway.identity import generate_dev_issuer, mint_token
from tests.e2e.conftest import GRANTS
from tests.support.processes import (
    REPO,
    TEST_ISSUER,
    GatewayServer,
    McpUpstreamServer,
    write_policy,
)
from tests.support.waiting import eventually

ENTRIES = "/v1/audit/entries"
ORIGIN = "test.gateway/audit"  # GatewayServer's audit.origin


@pytest.fixture(scope="module")
def explorer(workdir: Path, mcp_upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    server = _gateway(workdir / "explorer", mcp_upstream)
    server.start()
    yield server
    server.stop()


def _gateway(directory: Path, upstream: McpUpstreamServer) -> GatewayServer:
    server = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url}],
        policy=write_policy(directory, GRANTS),
    )
    server.config["audit"].update({"checkpoint_every_entries": 1000, "checkpoint_every_s": 0.2})
    return server


def _auditor(server: GatewayServer) -> dict[str, str]:
    return server.headers(sub="user:audrey", roles=("auditor",))


def _call(server: GatewayServer, sub: str, text: str) -> str:
    response = httpx.post(
        f"{server.url}/v1/tools/up__echo/call",
        headers=server.headers(sub=sub),
        json={"arguments": {"text": text}},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def _get(server: GatewayServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers=_auditor(server), timeout=10)


def _checkpointed(server: GatewayServer) -> None:
    """Waits until a checkpoint covers every entry written so far."""
    newest = _get(server, ENTRIES, limit=1).json()["entries"][0]["seq"]

    def covered() -> bool:
        served = httpx.get(server.url + "/v1/audit/checkpoint", timeout=30)
        return served.status_code == 200 and int(served.text.splitlines()[1]) > newest

    eventually(covered, f"a checkpoint covering entry {newest}")


def test_only_auditors_read_entries(explorer: GatewayServer, tmp_path: Path) -> None:
    for path in (ENTRIES, ENTRIES + "/0"):
        missing = httpx.get(explorer.url + path, timeout=5)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer resource_metadata=")

        forger_key, _ = generate_dev_issuer(tmp_path / "forger")
        forged = mint_token(
            forger_key, issuer=TEST_ISSUER, audience=explorer.url, sub="user:x", roles=("auditor",)
        )
        refused = httpx.get(
            explorer.url + path, headers={"Authorization": f"Bearer {forged}"}, timeout=5
        )
        assert refused.status_code == 401, refused.text

        agent = httpx.get(explorer.url + path, headers=explorer.headers(), timeout=5)
        assert agent.status_code == 403
        error = agent.json()["error"]
        assert error["code"] == "not_an_auditor"
        assert "audit.reader_roles" in error["message"] and "agent:test" in error["message"]

        approver = explorer.headers(sub="user:carol", roles=("approver",))
        assert httpx.get(explorer.url + path, headers=approver, timeout=5).status_code == 403


def test_filters_find_entries_with_proofs_that_verify_offline(explorer: GatewayServer) -> None:
    alice = _call(explorer, "agent:alice", "from alice")
    bob = _call(explorer, "agent:bob", "from bob")
    _checkpointed(explorer)

    found = _get(explorer, ENTRIES, principal="agent:bob", kind="call.attempt").json()
    assert [e["ref"] for e in found["entries"]] == [bob]
    summary = found["entries"][0]
    assert summary["principal"] == "agent:bob" and summary["tool"] == "up__echo"
    assert summary["verification"] == {"status": "verified", "reason": None, "code": None}
    assert found["checkpoint"]["size"] > summary["seq"]

    by_ref = _get(explorer, ENTRIES, ref=alice).json()["entries"]
    assert [e["kind"] for e in by_ref] == ["call.outcome", "call.decision", "call.attempt"]
    assert _get(explorer, ENTRIES, since="2999-01-01T00:00:00Z").json()["entries"] == []
    assert _get(explorer, ENTRIES, tool="up__echo", until="2000-01-01T00:00:00Z").json() == {
        "entries": [],
        "next_cursor": None,
        "checkpoint": found["checkpoint"],
    }
    window = _get(explorer, ENTRIES, since=by_ref[-1]["ts"], until=by_ref[0]["ts"]).json()
    assert {e["seq"] for e in by_ref} <= {e["seq"] for e in window["entries"]}

    # The detail: payload, proof, checkpoint; checked here with nothing of the server's
    # but its published key.
    detail = _get(explorer, by_ref[-1]["url"]).json()
    assert detail["payload"]["request_id"] == alice
    assert detail["payload"]["arguments"] == {"text": "from alice"}
    assert detail["payload_status"] == "present"
    assert detail["verification"]["status"] == "verified"
    keys = parse_keys(httpx.get(explorer.url + "/v1/audit/keys", timeout=5).text)
    leaf = base64.b64decode(detail["leaf"])
    assert leaf_hash(leaf).hex() == detail["leaf_hash"]
    proof, checkpoint = detail["proof"], detail["checkpoint"]
    assert proof["leaf_index"] == detail["seq"] and proof["tree_size"] == checkpoint["size"]
    verify_inclusion(
        leaf_hash(leaf),
        proof["leaf_index"],
        proof["tree_size"],
        [base64.b64decode(h) for h in proof["hashes"]],
        base64.b64decode(checkpoint["root"]),
    )
    verify_note(checkpoint["note"], [k.verifier for k in keys])
    assert (
        verify_receipt(proof["receipt"], leaf, origin=ORIGIN, keys=keys).size == proof["tree_size"]
    )


def test_pages_follow_the_cursor(explorer: GatewayServer) -> None:
    for i in range(3):
        _call(explorer, "agent:pager", f"page {i}")
    everything = [e["seq"] for e in _get(explorer, ENTRIES, limit=200).json()["entries"]]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4} if cursor is None else {"limit": 4, "cursor": cursor}
        page = _get(explorer, ENTRIES, **params).json()
        seen += [e["seq"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything == sorted(everything, reverse=True)


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (ENTRIES, {"principle": "agent:a"}, "unknown query parameter 'principle'"),
        (ENTRIES, {"since": "yesterday"}, "since 'yesterday' is not an RFC 3339 time"),
        (ENTRIES, {"limit": "1000"}, "limit must be from 1 to 200"),
        (ENTRIES, {"cursor": "-5"}, "cursor must be a non-negative decimal integer"),
        (ENTRIES, {"kind": "CALL"}, "kind 'CALL' is not an entry kind"),
        (ENTRIES + "/abc", {}, "entry seq must be a non-negative decimal integer"),
    ],
)
def test_bad_parameters_are_400(
    explorer: GatewayServer, path: str, params: dict[str, str], message: str
) -> None:
    response = _get(explorer, path, **params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert message in response.json()["error"]["message"]


def test_unknown_entry_is_404(explorer: GatewayServer) -> None:
    response = _get(explorer, ENTRIES + "/999999")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "audit_entry_not_found",
        "message": "no audit entry 999999",
    }


def test_erased_and_tampered_entries_show_as_such(
    tmp_path: Path, mcp_upstream: McpUpstreamServer
) -> None:
    server = _gateway(tmp_path / "gw", mcp_upstream)
    server.start()
    try:
        first, second, third = (_call(server, "agent:t", f"t{i}") for i in range(3))
        _checkpointed(server)
        seq = {
            ref: _get(server, ENTRIES, ref=ref, kind="call.attempt").json()["entries"][0]["seq"]
            for ref in (first, second, third)
        }
        # Erasure through the CLI, beside the running gateway.
        erase = ["audit", "erase", str(seq[first]), "--reason", "DSR-7"]
        erased_by = subprocess.run(
            [sys.executable, "-m", "gateway", *erase, "--config", str(server.config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert erased_by.returncode == 0, erased_by.stderr
        erased = _get(server, f"{ENTRIES}/{seq[first]}").json()
        assert erased["payload"] is None and erased["payload_status"] == "erased"
        assert erased["erasure_seq"] > seq[first]
        assert erased["verification"]["status"] == "verified"

        # Tampering, with the append-only triggers out of the way.
        database = sa.create_engine(server.config["storage"]["url"])
        try:
            with database.begin() as conn:
                conn.exec_driver_sql("DROP TRIGGER audit_payloads_no_update")
                conn.exec_driver_sql("DROP TRIGGER audit_entries_no_update")
                conn.execute(
                    sa.text("UPDATE audit_payloads SET payload = :p WHERE seq = :s"),
                    {"p": '{"arguments":{"text":"rewritten"}}', "s": seq[second]},
                )
                leaf = conn.execute(
                    sa.text("SELECT leaf FROM audit_entries WHERE seq = :s"), {"s": seq[third]}
                ).scalar_one()
                forged = bytes(leaf).replace(b"call.attempt", b"call.attemps")
                conn.execute(
                    sa.text("UPDATE audit_entries SET leaf = :l, leaf_hash = :h WHERE seq = :s"),
                    {"l": forged, "h": leaf_hash(forged), "s": seq[third]},
                )
        finally:
            database.dispose()

        rewritten = _get(server, f"{ENTRIES}/{seq[second]}").json()
        assert rewritten["verification"]["status"] == "failed"
        assert "payload does not match the leaf's commitment" in rewritten["verification"]["reason"]
        forged_entry = _get(server, f"{ENTRIES}/{seq[third]}").json()
        assert forged_entry["verification"]["status"] == "failed"
        assert "indexed kind 'call.attempt' differs" in forged_entry["verification"]["reason"]
        # The list marks them too, and leaves the rest verified.
        listed = {e["seq"]: e for e in _get(server, ENTRIES, principal="agent:t").json()["entries"]}
        assert listed[seq[second]]["verification"]["status"] == "failed"
        assert listed[seq[third]]["verification"]["status"] == "failed"
        # (Not the forged leaf's Merkle sibling: its proof holds the forged hash.)
        assert listed[seq[first] + 1]["verification"]["status"] == "verified"
    finally:
        server.stop()
