"""Versioned workflows end to end: `gateway serve` and the `gateway workflows` CLI —
publish (idempotent), pin, list, show, diff; a run of a published workflow; plan review
over REST; promotion to prod through an approval that the requester cannot give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.mcp_client import connect
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually, eventually_async

GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__effect"},
    {"role": "agent", "tool": "up__write"},
    {"role": "agent", "tool": "workflow__*"},
]
AUTHOR = {"sub": "user:author", "roles": ("workflow_author", "agent")}
APPROVER = {"sub": "user:approver", "roles": ("approver",)}
SETTINGS = {
    "workflow_publisher_roles": ["workflow_author"],
    "workflow_channels": {"prod": {"approvers": ["role:approver"]}},
    "plan_review": {"ad_hoc_min_risk": "high", "approvers": ["role:approver"]},
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("wv-upstream"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("wv")
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[
            {
                "name": "up",
                "url": upstream.url,
                "timeout_s": 5,
                "risk": {"tools": {"write": "high"}},
            }
        ],
        policy=write_policy(directory, GRANTS, **SETTINGS),
    )
    server.config["executor"] = {"workers": 1, "lease_s": 60, "poll_s": 0.05}
    server.start()
    yield server
    server.stop()


def _cli(
    gateway: GatewayServer, *args: str, who: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    token = gateway.token(who["sub"], roles=who["roles"])
    env = {**os.environ, "GATEWAY_URL": gateway.url, "GATEWAY_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def _workflow_dir(tmp_path: Path, version: str, text: str) -> Path:
    directory = tmp_path / f"greeter-{version}"
    (directory / "scenarios").mkdir(parents=True)
    manifest = {
        "name": "greeter",
        "version": version,
        "description": "greets someone",
        "inputs": {
            "type": "object",
            "required": ["who"],
            "properties": {"who": {"type": "string"}},
        },
        "plan": {
            "steps": [
                {
                    "id": "hello",
                    "tool": "up__echo",
                    "arguments": {"text": text + " ${{ inputs.who }}"},
                }
            ]
        },
        "policy_revisions": ["tested-rev"],
    }
    (directory / "workflow.yaml").write_text(yaml.safe_dump(manifest))
    scenario = {
        "inputs": {"who": "ada"},
        "results": {"hello": {"output": {"result": f"{text} ada"}}},
        "expect": {"status": "succeeded", "steps": {"hello": "succeeded"}},
    }
    (directory / "scenarios" / "ada.yaml").write_text(yaml.safe_dump(scenario))
    return directory


def _wait(gateway: GatewayServer, run_id: str, *statuses: str) -> dict[str, Any]:
    # As an approver: approvers read every run (executor.viewer_roles).
    headers = gateway.headers(gateway.token(APPROVER["sub"], roles=APPROVER["roles"]))

    def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = httpx.get(
            f"{gateway.url}/v1/runs/{run_id}", headers=headers, timeout=30
        ).json()
        return run if run["status"] in statuses else None

    return eventually(reached, f"run {run_id} {statuses}")


def test_publish_run_diff_and_promote_through_an_approval(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    first = _workflow_dir(tmp_path, "1.0.0", "hello")
    # Unpinned: refused, naming the tool; `pin --write` pins what the gateway offers.
    refused = _cli(gateway, "workflows", "publish", str(first), who=AUTHOR)
    assert refused.returncode == 1 and "tools.up__echo" in refused.stderr
    pinned = _cli(gateway, "workflows", "pin", str(first), "--write", who=AUTHOR)
    assert pinned.returncode == 0, pinned.stderr
    published = _cli(gateway, "workflows", "publish", str(first), who=AUTHOR)
    assert published.returncode == 0, published.stderr
    assert "greeter@1.0.0 published: wf_" in published.stdout
    again = _cli(gateway, "workflows", "publish", str(first), who=AUTHOR)
    assert "already published" in again.stdout
    assert again.stdout.split()[-2:] == published.stdout.split()[-2:]  # same id and hash
    # An agent may not publish.
    agent = {"sub": "agent:x", "roles": ("agent",)}
    no = _cli(gateway, "workflows", "publish", str(first), who=agent)
    assert no.returncode == 1 and "workflow_refused" in no.stderr

    second = _workflow_dir(tmp_path, "1.1.0", "hi")
    assert _cli(gateway, "workflows", "pin", str(second), "--write", who=AUTHOR).returncode == 0
    assert _cli(gateway, "workflows", "publish", str(second), who=AUTHOR).returncode == 0
    diff = json.loads(
        _cli(
            gateway, "workflows", "diff", "greeter@1.0.0", "greeter@1.1.0", "--json", who=agent
        ).stdout
    )
    assert diff["differences"] == {
        "plan": {
            "steps": {
                "changed": {
                    "hello": {
                        "arguments": {
                            "from": {"text": "hello ${{ inputs.who }}"},
                            "to": {"text": "hi ${{ inputs.who }}"},
                        }
                    }
                }
            }
        },
        # Its scenario records the new greeting.
        "scenarios": {"changed": ["ada"]},
    }
    listed = _cli(gateway, "workflows", "list", who=agent)
    assert "greeter" in listed.stdout and "1.0.0, 1.1.0" in listed.stdout

    # A run of a published version records its hash.
    version = json.loads(
        _cli(gateway, "workflows", "show", "greeter@1.0.0", "--json", who=agent).stdout
    )
    assert version["manifest"]["scenarios"]["ada"]["inputs"] == {"who": "ada"}
    tested = _cli(gateway, "workflows", "test", str(first), who=agent)
    assert tested.returncode == 0 and "pass  ada" in tested.stdout, tested.stderr
    # A scenario that expects what the workflow does not do fails the test.
    wrong = first / "scenarios" / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"inputs": {"who": "x"}, "expect": {"status": "succeeded"}}))
    failing = _cli(gateway, "workflows", "test", str(first), who=agent)
    assert failing.returncode == 1 and "FAIL  wrong" in failing.stdout
    assert "no recording" in failing.stdout
    wrong.unlink()
    ran = _cli(
        gateway,
        "runs",
        "submit",
        "--workflow",
        "greeter@1.0.0",
        "--inputs",
        '{"who": "ada"}',
        "--watch",
        who=agent,
    )
    assert ran.returncode == 0, ran.stderr
    run = _wait(gateway, ran.stdout.split()[0], "succeeded")
    assert run["provenance"]["workflow"]["hash"] == version["hash"]

    # Promotion to prod: held for an approver; the requester may not approve it.
    held = _cli(gateway, "workflows", "promote", "greeter@1.1.0", "--to", "prod", "-q", who=AUTHOR)
    assert held.returncode == 2, held.stderr
    approval = held.stdout.strip()
    self_approved = _cli(gateway, "approvals", "approve", approval, who=AUTHOR)
    assert self_approved.returncode == 1 and "self_approval" in self_approved.stderr
    still = _cli(gateway, "workflows", "promote", "greeter@1.1.0", "--to", "prod", "-q", who=AUTHOR)
    assert still.returncode == 2 and still.stdout.strip() == approval
    approved = _cli(gateway, "approvals", "approve", approval, "--reason", "tested", who=APPROVER)
    assert approved.returncode == 0, approved.stderr
    done = _cli(gateway, "workflows", "promote", "greeter@1.1.0", "--to", "prod", who=AUTHOR)
    assert done.returncode == 0 and "promoted" in done.stdout, done.stderr
    shown = json.loads(_cli(gateway, "workflows", "show", "greeter", "--json", who=agent).stdout)
    assert shown["channels"]["prod"]["version"] == "1.1.0"
    # Runs may name the channel.
    by_channel = _cli(
        gateway,
        "runs",
        "submit",
        "--workflow",
        "greeter@prod",
        "--inputs",
        '{"who": "b"}',
        "--watch",
        who=agent,
    )
    assert by_channel.returncode == 0, by_channel.stderr
    run = _wait(gateway, by_channel.stdout.split()[0], "succeeded")
    assert run["provenance"]["workflow"]["channel"] == "prod"
    assert run["provenance"]["workflow"]["version"] == "1.1.0"


def test_plan_review_over_rest(gateway: GatewayServer, upstream: McpUpstreamServer) -> None:
    agent = gateway.headers(gateway.token("agent:reviewed", roles=("agent",)))
    plan = {
        "steps": [
            {"id": "note", "tool": "up__echo", "arguments": {"text": "about to write"}},
            {
                "id": "write",
                "tool": "up__write",
                "needs": ["note"],
                "arguments": {"key": "reviewed-e2e", "value": "v"},
            },
        ]
    }
    answer = httpx.post(f"{gateway.url}/v1/runs", json={"plan": plan}, headers=agent, timeout=30)
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["run_id"]
    run = httpx.get(f"{gateway.url}/v1/runs/{run_id}", headers=agent, timeout=30).json()
    assert run["status"] == "waiting" and run["review"]["status"] == "pending"
    approval_id = run["review"]["approval_id"]
    approver = gateway.headers(gateway.token("user:approver", roles=("approver",)))
    shown = httpx.get(
        f"{gateway.url}/v1/approvals/{approval_id}", headers=approver, timeout=30
    ).json()
    assert [s["id"] for s in shown["arguments"]["plan"]["steps"]] == ["note", "write"]
    cli = _cli(gateway, "approvals", "show", approval_id, who=APPROVER)
    assert "step write: up__write after note" in cli.stdout, cli.stderr
    assert '"key": "reviewed-e2e"' in cli.stdout
    assert not any("reviewed-e2e" in json.dumps(c) for c in upstream.calls())
    decided = httpx.post(
        f"{gateway.url}/v1/approvals/{approval_id}/approve",
        json={"reason": "fine"},
        headers=approver,
        timeout=30,
    )
    assert decided.status_code == 200, decided.text
    assert _wait(gateway, run_id, "succeeded")["review"]["status"] == "approved"
    assert any("reviewed-e2e" in json.dumps(c) for c in upstream.calls())


@pytest.mark.anyio
async def test_an_agent_runs_a_published_workflow_over_mcp(gateway: GatewayServer) -> None:
    author = gateway.headers(gateway.token(AUTHOR["sub"], roles=AUTHOR["roles"]))
    async with httpx.AsyncClient(headers=author, timeout=30) as http:
        tools = (await http.get(f"{gateway.url}/v1/tools")).json()["tools"]
    pinned = {t["name"]: t["definition_hash"] for t in tools if t["name"] == "up__echo"}
    manifest = {
        "name": "mcp-greeter",
        "version": "0.1.0",
        "plan": {"steps": [{"id": "hi", "tool": "up__echo", "arguments": {"text": "mcp"}}]},
        "tools": pinned,
    }
    async with httpx.AsyncClient(headers=author, timeout=30) as http:
        published = await http.post(f"{gateway.url}/v1/workflows", json={"manifest": manifest})
    assert published.status_code == 201, published.text
    async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
        submitted = await client.call_tool(
            "workflow__submit_plan", {"workflow": "mcp-greeter@0.1.0"}
        )
        assert not submitted.is_error, submitted.content
        run_id = submitted.structured_content["run_id"]

        async def finished() -> Any:
            run = await client.call_tool("workflow__get_run", {"run_id": run_id})
            return run if run.structured_content["status"] == "succeeded" else None

        run = await eventually_async(finished, f"run {run_id} succeeded")
        assert run.structured_content["workflow"]["hash"] == published.json()["hash"]
        both = await client.call_tool(
            "workflow__submit_plan", {"workflow": "mcp-greeter@0.1.0", "plan": {"steps": []}}
        )
        assert both.is_error and both.structured_content["error"]["code"] == "invalid_arguments"
        missing = await client.call_tool("workflow__submit_plan", {"workflow": "nope@1.0.0"})
        assert missing.structured_content["error"]["code"] == "workflow_not_found"


def test_rest_refusals_are_clear_and_change_nothing(gateway: GatewayServer) -> None:
    author = gateway.headers(gateway.token(AUTHOR["sub"], roles=AUTHOR["roles"]))
    before = httpx.get(f"{gateway.url}/v1/workflows", headers=author, timeout=30).json()

    def post(path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{gateway.url}{path}", json=body, headers=headers or author, timeout=30)

    assert httpx.post(f"{gateway.url}/v1/workflows", json={}, timeout=30).status_code == 401
    assert post("/v1/workflows", {"manifest": "not an object"}).status_code == 400
    deep: Any = "x"
    for _ in range(100):
        deep = {"a": deep}
    hostile = post("/v1/workflows", {"manifest": {"name": "h", "version": "1.0.0", "plan": deep}})
    assert hostile.status_code == 400, hostile.text
    invalid = post("/v1/workflows", {"manifest": {"name": "Bad Name", "version": "1", "plan": {}}})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "workflow_invalid"
    both = post("/v1/runs", {"workflow": "greeter@1.0.0", "plan": {"steps": []}})
    assert both.status_code == 400
    for ref in ("nope@1.0.0", "../../etc@1.0.0", "greeter@", "greeter@NOT A CHANNEL"):
        missing = post("/v1/runs", {"workflow": ref})
        assert missing.status_code == 404, (ref, missing.text)
        assert missing.json()["error"]["code"] == "workflow_not_found"
    promote = post("/v1/workflows/greeter/1.0.0/promote", {"channel": "PROD!"})
    assert promote.status_code == 400
    assert httpx.get(f"{gateway.url}/v1/workflows/nope", headers=author).status_code == 404
    no_params = httpx.get(f"{gateway.url}/v1/workflows/greeter/diff", headers=author)
    assert no_params.status_code == 400
    after = httpx.get(f"{gateway.url}/v1/workflows", headers=author, timeout=30).json()
    assert after == before
