"""The README's quickstart, run as a new user would: a clean clone, then `make run`.

Uses a fresh clone of the committed tree (what CI and users get), its own virtualenv,
and the uv bootstrap path a machine without uv takes. `make test` itself is what is
running this test, so it is covered by CI running at all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import REPO, free_port
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("quickstart") / "gateway"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True, timeout=120)
    return target


def test_make_run_starts_a_working_dev_gateway_from_a_clean_clone(clone: Path) -> None:
    port = free_port()
    log_path = clone / "make-run.log"
    with log_path.open("wb") as log:
        # UV=... forces the project's own uv bootstrap, as on a machine without uv.
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}", f"UV={clone / '.tools/uv/bin/uv'}"],
            cwd=clone,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process, log_path, timeout=300)
        banner = log_path.read_text()
        assert f"{url}/mcp" in banner and f"{url}/v1/tools" in banner
        # The banner comes once the server listens, never before.
        assert banner.index(f"listening on {url}") < banner.index("Try it")
        agent, approver = re.findall(r"token \(role (?:agent|approver), 24 h\):\s+(\S+)", banner)
        headers = {"Authorization": f"Bearer {agent}"}

        echo = httpx.post(
            f"{url}/v1/tools/demo__echo/call",
            headers=headers,
            json={"arguments": {"text": "hello"}},
            timeout=10,
        )
        assert echo.status_code == 200, echo.text
        assert echo.json()["result"]["content"][0]["text"] == "hello"

        inside = httpx.post(
            f"{url}/v1/tools/demo__read_file/call",
            headers=headers,
            json={"arguments": {"path": "README.txt"}},
            timeout=10,
        )
        assert (
            inside.status_code == 200 and "sandbox" in inside.json()["result"]["content"][0]["text"]
        )
        outside = httpx.post(
            f"{url}/v1/tools/demo__read_file/call",
            headers=headers,
            json={"arguments": {"path": "../keys/dev-issuer.pem"}},
            timeout=10,
        )
        assert outside.status_code == 403

        # Held for a human: Prefer: wait=0 answers 202 at once instead of waiting.
        delete = httpx.post(
            f"{url}/v1/tools/demo__delete_records/call",
            headers={**headers, "Prefer": "wait=0"},
            json={"arguments": {"table": "orders", "ids": [1]}},
            timeout=10,
        )
        assert delete.status_code == 202, delete.text
        assert delete.json()["status"] == "pending_approval"
        assert delete.json()["approval_id"].startswith("apr_")

        # The approver role alone grants no tool calls in the default policy.
        as_approver = httpx.get(f"{url}/v1/tools", headers={"Authorization": f"Bearer {approver}"})
        assert as_approver.json()["tools"] == []

        # The banner's own command mints tokens this gateway accepts (on any port).
        (command,) = re.findall(r"More tokens: (.+--role agent)$", banner, re.MULTILINE)
        assert "--port" not in command
        minted = subprocess.run(
            command.replace("agent:me", "agent:cli"),
            shell=True,
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        listed = httpx.get(f"{url}/v1/tools", headers={"Authorization": f"Bearer {minted}"})
        assert {t["name"] for t in listed.json()["tools"]} == {
            "demo__echo",
            "demo__read_file",
            "demo__delete_records",
            "demo__ask_confirmation",
            "demo__order_status",
        }
        # A second `make run` on the busy port fails at once, printing no tokens and
        # writing nothing (the audit log is as long as before).
        entries = _audit_entries(clone)
        second = subprocess.run(
            ["make", "run", f"PORT={port}"],
            cwd=clone,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in second.stderr
        assert "token" not in second.stdout.lower() and "Traceback" not in second.stderr
        assert _audit_entries(clone) == entries

        # The demo's resources and prompt, through MCP (2026-07-28, no session).
        resources = _mcp(url, minted, "resources/list")["resources"]
        assert [r["uri"] for r in resources] == ["gateway:demo/demo://readme"]
        templates = _mcp(url, minted, "resources/templates/list")["resourceTemplates"]
        assert [t["uriTemplate"] for t in templates] == ["gateway:demo/file:///{path}"]
        readme = _mcp(url, minted, "resources/read", {"uri": "gateway:demo/demo://readme"})
        assert readme["contents"][0]["text"].startswith("# The demo upstream")
        review = _mcp(
            url, minted, "prompts/get", {"name": "demo__review", "arguments": {"code": "x"}}
        )
        assert "Review this python code" in review["messages"][0]["content"]["text"]
        # Everything dev mode made is in its data folder: removing var/dev resets it.
        assert {p.name for p in (clone / "var").iterdir()} == {"dev"}
        assert {p.name for p in (clone / "var/dev/keys").iterdir()} >= {
            "dev-issuer.pem",
            "gateway-signing.pem",
            "audit-signing.pem",
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _audit_entries(clone: Path) -> int:
    tail = subprocess.run(
        [str(clone / ".venv/bin/gateway"), "audit", "tail", "-n", "100000", "--json"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return len(tail.stdout.splitlines())


def _mcp(url: str, token: str, method: str, params: dict[str, Any] | None = None) -> Any:
    """One sessionless 2026-07-28 request to /mcp; its result (answered as an event
    stream or as JSON)."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "quickstart", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
    }
    name = (params or {}).get("name") or (params or {}).get("uri")
    if name is not None:
        headers["Mcp-Name"] = name
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": method,
        "params": {**(params or {}), "_meta": envelope},
    }
    answer = httpx.post(f"{url}/mcp", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    text = answer.text
    if answer.headers["content-type"].startswith("text/event-stream"):
        text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
    message = json.loads(text)
    assert "result" in message, message
    return message["result"]


def _wait_ready(url: str, process: subprocess.Popen, log: Path, *, timeout: float) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, "the gateway ready", timeout_s=timeout, detail=log.read_text)
