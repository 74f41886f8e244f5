"""The command line as an operator uses it, against real upstreams and a real gateway."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from gateway.audit import read_entries, verify_chain
from gateway.store import create_engine
from tests.support.processes import REPO, GatewayServer
from tests.support.waiting import TIMEOUT_S


def gateway_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_tools_lists_the_catalog_with_risk_and_hashes(gateway: GatewayServer) -> None:
    result = gateway_cli("tools", "--json", "--config", str(gateway.config_path))
    assert result.returncode == 0, result.stderr
    tools = {t["name"]: t for t in json.loads(result.stdout)["tools"]}
    assert {"up__echo", "up__write", "local__echo"} <= set(tools)
    assert all(len(t["definition_hash"]) == 64 for t in tools.values())
    assert tools["up__echo"]["risk"] == "medium"  # annotations untrusted: the default

    table = gateway_cli("tools", "--config", str(gateway.config_path))
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["TOOL", "RISK", "DEFINITION", "HASH"]
    assert any(line.startswith("up__echo ") for line in table.stdout.splitlines())


def test_check_config_accepts_a_valid_file_and_names_the_bad_key(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    ok = gateway_cli("check-config", str(gateway.config_path))
    assert ok.returncode == 0, ok.stderr
    assert "policy     embedded sha256:" in ok.stdout

    broken = yaml.safe_load(gateway.config_path.read_text())
    broken["identity"]["issuers"][0]["algorithms"] = ["HS256"]
    broken["upstreams"][0]["timeout_s"] = -1
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    bad = gateway_cli("check-config", str(path))
    assert bad.returncode == 1
    assert "identity.issuers[0].algorithms" in bad.stderr
    assert "upstreams[0].timeout_s" in bad.stderr
    assert "Traceback" not in bad.stderr

    missing = gateway_cli("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "cannot read config file" in missing.stderr


def test_token_command_mints_tokens_the_gateway_accepts(gateway: GatewayServer) -> None:
    token = gateway_cli(
        "token",
        "--sub",
        "agent:cli",
        "--role",
        "agent",
        "--act",
        "user:carol",
        "--key",
        str(gateway.issuer_key),
        "--issuer",
        "https://issuer.test",
        "--audience",
        gateway.url,
    )
    assert token.returncode == 0, token.stderr
    response = httpx.get(
        f"{gateway.url}/v1/tools", headers={"Authorization": f"Bearer {token.stdout.strip()}"}
    )
    assert response.status_code == 200 and response.json()["tools"]


def test_serve_without_config_or_dev_explains_itself() -> None:
    result = gateway_cli("serve")
    assert result.returncode == 1
    assert "--config FILE" in result.stderr and "--dev" in result.stderr


def test_graceful_shutdown_drains_the_audit_log_and_logs_json(tmp_path: Path, mcp_upstream) -> None:
    from tests.e2e.conftest import GRANTS
    from tests.support.processes import write_policy

    server = GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy=write_policy(tmp_path, GRANTS),
    ).start()
    responses = [
        httpx.post(
            f"{server.url}/v1/tools/up__echo/call",
            headers=server.headers(),
            json={"arguments": {"text": f"n{i}"}},
            timeout=10,
        )
        for i in range(20)
    ]
    assert all(r.status_code == 200 for r in responses)
    assert server.process is not None
    server.process.popen.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after a clean shutdown, as a signalled process should.
    assert server.process.popen.wait(TIMEOUT_S) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()

    engine = create_engine(server.config["storage"]["url"])
    entries = read_entries(engine)
    engine.dispose()
    assert [e.kind for e in entries].count("call.outcome") == 20
    verify_chain(entries, "test.gateway/audit")

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("tool") == "up__echo"]
    assert len(calls) == 20
    assert {c["request_id"] for c in calls} == {r.json()["request_id"] for r in responses}
    assert all(c["status"] == "ok" and c["sub"] == "agent:test" for c in calls)


def test_a_database_that_cannot_be_reached_is_one_line_not_a_traceback(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    """A process started while its database is away exits 1 with the driver's reason
    (its supervisor restarts it, docs/operations.md, Faults); so does a command."""
    config = yaml.safe_load(gateway.config_path.read_text())
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    away = "postgresql+psycopg://gateway:secret@127.0.0.1:1/gateway"
    config["storage"] = {"url": away}
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    for args in (
        ("serve", "--config", str(config_path), "--port", "0"),
        ("audit", "verify", "--db", away),
    ):
        result = gateway_cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("gateway: error: the database is unavailable ("), last
        assert "Connection refused" in last and "secret" not in result.stderr
