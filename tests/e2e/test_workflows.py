"""Workflows end to end: `gateway serve` with its executor workers, plans submitted
over REST, over MCP (`workflow__submit_plan`) and with the `gateway runs` CLI."""

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
    {"role": "agent", "tool": "workflow__*"},
]

PLAN = {
    "name": "greet",
    "inputs": {"type": "object", "properties": {"who": {"type": "string"}}},
    "steps": [
        {"id": "hello", "tool": "up__echo", "arguments": {"text": "hello ${{ inputs.who }}"}},
        {
            "id": "record",
            "tool": "up__effect",
            "needs": ["hello"],
            "arguments": {"label": "${{ steps.hello.output.result }}"},
        },
    ],
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("wf-upstream"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("wf")
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 5}],
        policy=write_policy(directory, GRANTS),
    )
    # A lease no busy machine lets lapse by accident: nothing here tests takeover.
    server.config["executor"] = {"workers": 2, "lease_s": 60, "poll_s": 0.05}
    server.start()
    yield server
    server.stop()


def _wait(gateway: GatewayServer, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = httpx.get(
            f"{gateway.url}/v1/runs/{run_id}", headers=gateway.headers(), timeout=30
        ).json()
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    return eventually(finished, f"run {run_id} finished")


def test_rest_submit_watch_and_list(gateway: GatewayServer) -> None:
    headers = {**gateway.headers(), "Idempotency-Key": "greet-1"}
    body = {"plan": PLAN, "inputs": {"who": "ada"}}
    created = httpx.post(f"{gateway.url}/v1/runs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    again = httpx.post(f"{gateway.url}/v1/runs", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == {
        **created.json(),
        "created": False,
        "status": again.json()["status"],
    }
    run = _wait(gateway, run_id)
    assert run["status"] == "succeeded", run
    assert run["steps"][1]["output"]["label"] == "hello ada"
    assert run["steps"][1]["attempts"][0]["status"] == "ok"
    assert run["provenance"]["gateway_version"]
    listed = httpx.get(f"{gateway.url}/v1/runs", headers=gateway.headers()).json()["runs"]
    assert run_id in [r["id"] for r in listed]
    # Another principal does not see it.
    other = httpx.get(f"{gateway.url}/v1/runs/{run_id}", headers=gateway.headers(sub="agent:o"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "run_not_found"
    assert "/v1/runs" in httpx.get(f"{gateway.url}/openapi.json").json()["paths"]


def test_rest_refusals_are_clear(gateway: GatewayServer) -> None:
    invalid = httpx.post(
        f"{gateway.url}/v1/runs",
        headers=gateway.headers(),
        json={"plan": {"steps": [{"id": "a", "tool": "up__nope"}, {"id": "a", "sleep_s": 1}]}},
    )
    assert invalid.status_code == 400
    problems = invalid.json()["error"]["details"]["problems"]
    assert {(p["step"], p["field"]) for p in problems} == {("a", "id"), ("a", "tool")}
    refused = httpx.post(
        f"{gateway.url}/v1/runs",
        headers=gateway.headers(roles=("guest",)),
        json={"plan": PLAN, "inputs": {"who": "x"}},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "plan_refused"
    unauthenticated = httpx.post(f"{gateway.url}/v1/runs", json={"plan": PLAN})
    assert unauthenticated.status_code == 401


@pytest.mark.anyio
async def test_a_planning_agent_submits_over_mcp(gateway: GatewayServer) -> None:
    async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"workflow__submit_plan", "workflow__get_run", "up__echo"} <= names
        submitted = await client.call_tool(
            "workflow__submit_plan", {"plan": yaml.safe_dump(PLAN), "inputs": {"who": "mcp"}}
        )
        assert not submitted.is_error, submitted.content
        run_id = submitted.structured_content["run_id"]

        async def finished() -> Any:
            run = await client.call_tool("workflow__get_run", {"run_id": run_id})
            return run if run.structured_content["status"] == "succeeded" else None

        run = await eventually_async(finished, f"run {run_id} succeeded")
        assert "hello: succeeded" in run.content[0].text
        bad = await client.call_tool("workflow__submit_plan", {"plan": {"steps": []}})
        assert bad.is_error and bad.structured_content["error"]["code"] == "plan_invalid"
    async with connect(gateway.mcp_url, gateway.token(roles=()), "2026-07-28") as client:
        assert (await client.list_tools()).tools == []  # no grant, not listed


def _cli(gateway: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_URL": gateway.url, "GATEWAY_TOKEN": gateway.token()}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_cli_runs_and_schedules(gateway: GatewayServer, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(PLAN))
    submitted = _cli(
        gateway, "runs", "submit", str(plan_file), "--inputs", '{"who": "cli"}', "--watch"
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.split()[0]
    assert f"run {run_id} succeeded" in submitted.stdout
    shown = _cli(gateway, "runs", "show", run_id)
    assert "hello" in shown.stdout and "succeeded" in shown.stdout
    listed = _cli(gateway, "runs", "list", "--json")
    assert run_id in [r["id"] for r in json.loads(listed.stdout)["runs"]]

    sleepy = tmp_path / "sleepy.json"
    sleepy.write_text(json.dumps({"steps": [{"id": "nap", "sleep_s": 60}]}))
    nap_id = _cli(gateway, "runs", "submit", str(sleepy)).stdout.split()[0]
    cancelled = _cli(gateway, "runs", "cancel", nap_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert _wait(gateway, nap_id)["status"] == "cancelled"
    again = _cli(gateway, "runs", "cancel", nap_id)
    assert again.returncode == 1 and "run_finished" in again.stderr

    added = _cli(
        gateway,
        "schedules",
        "add",
        "nightly",
        "0 3 * * *",
        str(plan_file),
        "--inputs",
        '{"who": "cron"}',
    )
    assert added.returncode == 0, added.stderr
    schedule_id = added.stdout.split()[0]
    listed = json.loads(_cli(gateway, "schedules", "list", "--json").stdout)["schedules"]
    assert [s["name"] for s in listed] == ["nightly"]
    assert listed[0]["next_fire_at"].endswith("T03:00:00.000Z")
    bad = _cli(gateway, "schedules", "add", "broken", "every day", str(plan_file))
    assert bad.returncode == 1 and "cron" in bad.stderr
    assert _cli(gateway, "schedules", "remove", schedule_id).returncode == 0
    assert json.loads(_cli(gateway, "schedules", "list", "--json").stdout)["schedules"] == []


def test_cli_names_the_approval_a_waiting_run_needs(gateway: GatewayServer, tmp_path: Path) -> None:
    plan = {
        "name": "gated",
        "steps": [
            {"id": "ask", "approval": {"approvers": ["role:approver"], "message": "go?"}},
            {"id": "after", "tool": "up__echo", "needs": ["ask"], "arguments": {"text": "ok"}},
        ],
    }
    plan_file = tmp_path / "gated.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    submitted = _cli(gateway, "runs", "submit", str(plan_file), "--quiet")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert run_id.startswith("run_") and "\n" not in run_id

    watched = _cli(gateway, "runs", "watch", run_id, "--until", "waiting")
    assert watched.returncode == 0, watched.stderr
    (line,) = [x for x in watched.stdout.splitlines() if x.startswith("ask: waiting")]
    approval_id = line.split("needs approval ")[1].split()[0]
    assert approval_id.startswith("apr_")
    assert f"(gateway approvals approve {approval_id})" in line
    assert watched.stdout.splitlines()[-1] == f"run {run_id} waiting"

    shown = _cli(gateway, "runs", "show", run_id)
    assert f"needs approval {approval_id}" in shown.stdout
    quiet = _cli(gateway, "runs", "watch", run_id, "--until", "waiting", "--quiet")
    assert quiet.stdout.split() == [approval_id]

    approver = gateway.token("user:boss", roles=("approver",))
    decided = _cli(gateway, "approvals", "approve", approval_id, "--token", approver)
    assert decided.returncode == 0, decided.stderr
    finished = _cli(gateway, "runs", "watch", run_id)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.splitlines()[-1] == f"run {run_id} succeeded"
    assert "needs approval" not in _cli(gateway, "runs", "show", run_id).stdout
