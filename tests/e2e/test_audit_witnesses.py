"""Auditors who need no trust in the operator, with real processes on loopback: a
gateway with two witnesses (`gateway witness serve`) gets every checkpoint cosigned;
an auditor verifies the export and a stand-alone consistency proof requiring both
witnesses' cosignatures. Then a forked log (a second database with the same key and
origin) is refused by the witnesses and detected by the verifier."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.audit.keys import load_signing_key
from gateway.tlog.consistency import verify_consistency_proof
from gateway.tlog.cosignature import verify_cosignatures
from gateway.tlog.errors import NoteSignatureError
from gateway.tlog.keys import parse_keys
from tests.e2e.conftest import GRANTS
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually
from tests.support.witnesses import WitnessServer

ORIGIN = "test.gateway/audit"  # GatewayServer's audit.origin
CONSISTENCY = "/v1/audit/proof/consistency"


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[tuple[Path, list[WitnessServer]]]:
    # The log's key exists before the gateway first starts, so the witnesses can be
    # told to follow it (as an operator hands the verifier key to a witness's operator).
    key_file = tmp_path / "audit-signing.pem"
    log_key = load_signing_key(key_file, ORIGIN).verifier.encode()
    servers = [
        WitnessServer.create(tmp_path / f"w{i}", f"witness.test/w{i}", [log_key]).start()
        for i in (1, 2)
    ]
    yield key_file, servers
    for server in servers:
        server.stop()


def _gateway(
    directory: Path, key_file: Path, upstream: McpUpstreamServer, servers: list[WitnessServer]
) -> GatewayServer:
    server = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url}],
        policy=write_policy(directory, GRANTS),
    )
    server.config["audit"].update(
        {
            "signing_key_file": str(key_file),
            "checkpoint_every_entries": 1000,
            "checkpoint_every_s": 0.2,
            "witnesses": [{"url": s.url, "key": s.key.encode(), "timeout_s": 10} for s in servers],
        }
    )
    return server


def _calls(server: GatewayServer, n: int, tag: str) -> None:
    for i in range(n):
        response = httpx.post(
            f"{server.url}/v1/tools/up__echo/call",
            headers=server.headers(),
            json={"arguments": {"text": f"{tag}{i}"}},
            timeout=10,
        )
        assert response.status_code == 200, response.text


def _cosigned_checkpoint(server: GatewayServer, servers: list[WitnessServer], size: int) -> str:
    """Waits for a served checkpoint of at least ``size`` entries that both witnesses
    cosigned."""

    def served() -> str | None:
        response = httpx.get(server.url + "/v1/audit/checkpoint", timeout=10)
        if response.status_code != 200 or int(response.text.splitlines()[1]) < size:
            return None
        try:
            verify_cosignatures(response.text, [s.key for s in servers], minimum=2)
        except NoteSignatureError:
            return None
        return response.text

    return eventually(served, f"a checkpoint of >= {size} entries cosigned by both witnesses")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def _head_size(server: GatewayServer) -> int:
    auditor = server.headers(sub="user:audrey", roles=("auditor",))
    entries = httpx.get(
        server.url + "/v1/audit/entries", params={"limit": 1}, headers=auditor, timeout=10
    )
    return int(entries.json()["entries"][0]["seq"]) + 1


def test_witnessed_log_verifies_and_a_fork_is_refused_and_detected(
    tmp_path: Path,
    mcp_upstream: McpUpstreamServer,
    witnesses: tuple[Path, list[WitnessServer]],
) -> None:
    key_file, servers = witnesses
    witness_args = [arg for s in servers for arg in ("--witness", s.key.encode())]
    honest = _gateway(tmp_path / "honest", key_file, mcp_upstream, servers).start()
    try:
        _calls(honest, 3, "a")
        first = _cosigned_checkpoint(honest, servers, _head_size(honest))
        _calls(honest, 3, "b")
        latest = _cosigned_checkpoint(honest, servers, _head_size(honest))
        n, m = int(first.splitlines()[1]), int(latest.splitlines()[1])
        assert n < m
        keys_text = httpx.get(honest.url + "/v1/audit/keys", timeout=10).text
        keys = parse_keys(keys_text)

        # The consistency proof over REST, for auditors only, checked offline.
        auditor = honest.headers(sub="user:audrey", roles=("auditor",))
        answer = httpx.get(
            honest.url + CONSISTENCY, params={"from": n, "to": m}, headers=auditor, timeout=10
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["from_checkpoint"]["size"], body["to_checkpoint"]["size"]) == (n, m)
        verify_consistency_proof(body["proof"], first, keys=keys, origin=ORIGIN)
        agent = httpx.get(
            honest.url + CONSISTENCY, params={"from": n, "to": m}, headers=honest.headers()
        )
        assert agent.status_code == 403
        for bad in ({"from": 0, "to": m}, {"from": m, "to": n}, {"from": "x", "to": m}, {}):
            refused = httpx.get(honest.url + CONSISTENCY, params=bad, headers=auditor)
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"]["message"]
        missing = httpx.get(
            honest.url + CONSISTENCY, params={"from": n, "to": m + 10**6}, headers=auditor
        )
        assert missing.status_code == 404
    finally:
        honest.stop()

    (tmp_path / "keys").write_text(keys_text)
    trusted = tmp_path / "trusted-checkpoint"
    published = tmp_path / "honest" / "var" / "checkpoints"
    trusted.write_text((published / "latest").read_text())  # the auditor's own copy
    (tmp_path / "first").write_text(first)
    config = str(honest.config_path)

    # The auditor's checks: the export, requiring both witnesses on the trusted checkpoint.
    exported = _cli("audit", "export", "--out", str(tmp_path / "export"), "--config", config)
    assert exported.returncode == 0, exported.stderr
    verified = _cli(
        *("audit", "verify", str(tmp_path / "export"), "--keys", str(tmp_path / "keys")),
        *("--trusted-checkpoint", str(trusted), *witness_args, "--min", "2"),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "cosigned by witnesses: witness.test/w1, witness.test/w2" in verified.stdout

    # A stand-alone consistency proof, from the checkpoint the auditor kept earlier.
    proof = tmp_path / "proof.txt"
    proved = _cli(
        *("audit", "prove", "--consistency", str(n), str(m)),
        *("--out", str(proof), "--config", config),
    )
    assert proved.returncode == 0, proved.stderr
    checked = _cli(
        *("audit", "verify", "--consistency", str(proof), "--keys", str(tmp_path / "keys")),
        *("--trusted-checkpoint", str(tmp_path / "first"), *witness_args, "--min", "2"),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"extends your trusted checkpoint of size {n}" in checked.stdout

    # A fork: a second database, same key and origin, another (longer) history.
    fork = _gateway(tmp_path / "fork", key_file, mcp_upstream, servers).start()
    try:
        # Longer than what the witnesses cosigned last (the honest log's final
        # checkpoint), so they are asked to extend their view, and must refuse.
        witnessed = int(trusted.read_text().splitlines()[1])
        for batch in range(10):
            if _head_size(fork) > witnessed:
                break
            _calls(fork, 3, f"fork{batch}-")
        assert _head_size(fork) > witnessed

        def refused() -> bool:
            metrics = httpx.get(fork.url + "/metrics", timeout=10).text
            counted = {
                sample.labels["witness"]
                for family in text_string_to_metric_families(metrics)
                if family.name == "gateway_audit_witness_failures"
                for sample in family.samples
                if sample.name.endswith("_total") and sample.labels["reason"] == "refused"
            }
            return counted == {s.name for s in servers}

        eventually(refused, "both witnesses refused the fork", detail=fork.log)
        served = httpx.get(fork.url + "/v1/audit/checkpoint", timeout=10).text
        with pytest.raises(NoteSignatureError):
            verify_cosignatures(served, [s.key for s in servers], minimum=1)
    finally:
        fork.stop()
    for server in servers:
        assert "refused checkpoint" in server.log()

    # The verifier detects the fork: not witnessed, and not the history the auditor kept.
    fork_config = str(fork.config_path)
    exported = _cli(
        "audit", "export", "--out", str(tmp_path / "fork-export"), "--config", fork_config
    )
    assert exported.returncode == 0, exported.stderr
    detected = _cli(
        *("audit", "verify", str(tmp_path / "fork-export"), "--keys", str(tmp_path / "keys")),
        *witness_args,
        *("--min", "2"),
    )
    assert detected.returncode == 1
    assert "audit_not_witnessed" in detected.stdout
    against_trusted = _cli(
        *("audit", "verify", str(tmp_path / "fork-export"), "--keys", str(tmp_path / "keys")),
        *("--trusted-checkpoint", str(trusted)),
    )
    assert against_trusted.returncode == 1
    assert "root mismatch" in against_trusted.stdout
    # And no consistency proof from the fork leads from the auditor's checkpoint.
    fork_proof = tmp_path / "fork-proof.txt"
    fork_sizes = sorted(int(p.name) for p in (tmp_path / "fork-export" / "checkpoints").iterdir())
    proved = _cli(
        *("audit", "prove", "--consistency", str(n), str(fork_sizes[-1])),
        *("--out", str(fork_proof), "--config", fork_config),
    )
    if proved.returncode == 0:  # the fork has a checkpoint of size n: its proof fails
        checked = _cli(
            *("audit", "verify", "--consistency", str(fork_proof)),
            *("--keys", str(tmp_path / "keys"), "--trusted-checkpoint", str(tmp_path / "first")),
        )
        assert checked.returncode == 1
        assert "INVALID" in checked.stdout
