"""A replica killed with ``kill -9`` while it holds runs and approvals: the other
replica carries them on.

Two gateway replicas on one PostgreSQL database, each running executor loops. Runs
are held (leased) by both when one is killed mid-step: the survivor takes the dead
one's runs after their lease, repeats the interrupted step with the same idempotency
key (so its effect happens once), and finishes them. Approvals live in the database:
one requested through the dead replica, and one whose caller was waiting in it, are
decided and run through the survivor, each exactly once; so is an MCP task the dead
replica accepted, whose result the survivor then serves.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.surfaces.mcp import META_KEY
from tests.support.pg_cluster import rows
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.replicas import Deployment, audit_facts
from tests.support.waiting import eventually

pytestmark = [pytest.mark.postgres]

MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"
LOOPS = 2  # executor loops per replica
RUNS = 2 * LOOPS  # one per loop: every loop holds a run when the kill comes
GRANTS = [
    {"role": "agent", "tool": "up__rendezvous"},
    {"role": "agent", "tool": "up__effect"},
    {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
]


@pytest.fixture
def replicas(
    tmp_path: Path, upstream: McpUpstreamServer, pg_database_url: str
) -> Iterator[Deployment]:
    deployment = Deployment.configure(
        tmp_path,
        replicas=2,
        storage_url=pg_database_url,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 120}],
        policy=write_policy(tmp_path, GRANTS),
        executor={"workers": LOOPS, "poll_s": 0.1, "lease_s": 2},
        extra={"approvals": {"hold_s": 120, "sweep_interval_s": 1}},
    )
    deployment.start()
    yield deployment
    deployment.stop()


def post(gateway: GatewayServer, path: str, body: Any, **headers: str) -> httpx.Response:
    token = headers.pop("token", None) or gateway.token(sub="agent:kill")
    return httpx.post(
        f"{gateway.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}", **headers},
        timeout=180,
    )


def approve(gateway: GatewayServer, approval_id: str) -> None:
    approver = gateway.token(sub="user:bob", roles=("approver",))
    decided = post(gateway, f"/v1/approvals/{approval_id}/approve", {}, token=approver)
    assert decided.status_code == 200, decided.text


def pending_approval(gateway: GatewayServer, key: str) -> str | None:
    approver = gateway.token(sub="user:bob", roles=("approver",))
    listed = httpx.get(
        f"{gateway.url}/v1/approvals?status=pending",
        headers={"Authorization": f"Bearer {approver}"},
        timeout=60,
    ).json()
    for approval in listed["approvals"]:
        if approval["arguments"].get("key") == key:
            return str(approval["id"])
    return None


def run_of(gateway: GatewayServer, run_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.url}/v1/runs/{run_id}", headers=gateway.headers(sub="agent:kill"), timeout=60
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_replica_killed_with_runs_and_approvals_is_carried_on_by_the_other(
    replicas: Deployment, upstream: McpUpstreamServer, pg_database_url: str
) -> None:
    doomed, survivor = replicas.gateways
    marker = f"kill-{uuid.uuid4().hex[:6]}"
    group = f"{marker}-gate"

    # An approval requested through the doomed replica (the caller did not wait) ...
    asked = post(
        doomed,
        "/v1/tools/up__write/call",
        {"arguments": {"key": f"{marker}-asked", "value": "v"}},
        Prefer="wait=0",
    )
    assert asked.status_code == 202, asked.text
    asked_id = asked.json()["approval_id"]
    # ... and one whose caller is waiting in it when it dies.
    waiting: list[httpx.Response | Exception] = []

    def wait_in_doomed() -> None:
        try:
            waiting.append(
                post(
                    doomed,
                    "/v1/tools/up__write/call",
                    {"arguments": {"key": f"{marker}-held", "value": "v"}},
                )
            )
        except httpx.HTTPError as exc:
            waiting.append(exc)

    # ... and an MCP task (a client that takes tasks) accepted by it.
    task = mcp_request(
        doomed,
        "tools/call",
        {"name": "up__write", "arguments": {"key": f"{marker}-task", "value": "v"}},
    )["result"]
    assert task["resultType"] == "task" and task["status"] == "working", task
    task_approval = task["_meta"][META_KEY]["approval_id"]

    holder = threading.Thread(target=wait_in_doomed, daemon=True)
    holder.start()
    held_id = eventually(lambda: pending_approval(survivor, f"{marker}-held"), "the held call")

    # Runs whose first step blocks until RUNS + 1 calls of the group have arrived: every
    # executor loop of both replicas ends up holding one, mid-step.
    run_ids = []
    for index in range(RUNS):
        plan = {
            "name": "carried-on",
            "steps": [
                {
                    "id": "gate",
                    "tool": "up__rendezvous",
                    "arguments": {"group": group, "count": RUNS + 1},
                },
                {
                    "id": "effect",
                    "tool": "up__effect",
                    "arguments": {"label": f"{marker}-{index}"},
                    "needs": ["gate"],
                },
            ],
        }
        submitted = post(
            doomed, "/v1/runs", {"plan": plan}, **{"Idempotency-Key": f"{marker}-{index}"}
        )
        assert submitted.status_code == 201, submitted.text
        run_ids.append(submitted.json()["run_id"])

    def arrived() -> int:
        return sum(1 for c in upstream.calls() if c["arguments"].get("group") == group)

    eventually(lambda: arrived() >= RUNS, "every run mid-step", detail=replicas.logs)
    assert doomed.process is not None
    doomed_pid = doomed.process.popen.pid
    held_by_doomed = [
        r for r in run_ids if f":{doomed_pid}:" in (lease_owner(pg_database_url, r) or "")
    ]
    assert len(held_by_doomed) == LOOPS, [lease_owner(pg_database_url, r) for r in run_ids]

    doomed.process.kill()  # SIGKILL: no shutdown, leases and holds left as they were
    holder.join(60)
    assert waiting and not isinstance(waiting[0], httpx.Response), waiting

    # The last arrival releases the group: the survivor's runs go on; the dead one's
    # are taken over after their lease and their interrupted step is repeated.
    release = post(
        survivor,
        "/v1/tools/up__rendezvous/call",
        {"arguments": {"group": group, "count": RUNS + 1}},
    )
    assert release.status_code == 200, release.text
    for run_id in run_ids:
        eventually(
            lambda run_id=run_id: run_of(survivor, run_id)["status"] in ("succeeded", "failed"),
            f"run {run_id} finished",
            detail=replicas.logs,
        )
        assert run_of(survivor, run_id)["status"] == "succeeded", run_of(survivor, run_id)
    for run_id in held_by_doomed:
        # Begun by the dead replica, repeated and finished by the survivor.
        gate = attempts_of(pg_database_url, run_id, "gate")
        assert f":{doomed_pid}:" in gate[0] and f":{doomed_pid}:" not in gate[-1], gate
        assert f":{doomed_pid}:" not in attempts_of(pg_database_url, run_id, "effect")[-1]

    # The approvals are in the database: decided and run through the survivor, once.
    for approval_id, key in ((asked_id, f"{marker}-asked"), (held_id, f"{marker}-held")):
        approve(survivor, approval_id)
        for _ in range(2):  # the agent retries; a second retry is a replay
            retried = post(
                survivor, "/v1/tools/up__write/call", {"arguments": {"key": key, "value": "v"}}
            )
            assert retried.status_code == 200, retried.text
        assert sum(1 for c in upstream.calls() if c["arguments"].get("key") == key) == 1

    # The task accepted by the dead replica: approved and run once through the survivor,
    # its result read there.
    approve(survivor, task_approval)

    def task_done() -> dict[str, Any] | None:
        state = mcp_request(survivor, "tasks/get", {"taskId": task["taskId"]})["result"]
        return state if state["status"] == "completed" else None

    done = eventually(task_done, "the task completed", detail=replicas.logs)
    assert done["result"]["content"][0]["text"] == f"wrote {marker}-task"
    assert sum(1 for c in upstream.calls() if c["arguments"].get("key") == f"{marker}-task") == 1

    effects = [
        json.loads(line)
        for line in Path(str(upstream.call_log) + ".effects.jsonl").read_text().splitlines()
    ]
    labels = sorted(e["label"] for e in effects if e["label"].startswith(marker))
    assert labels == sorted(f"{marker}-{i}" for i in range(RUNS)), labels  # each once

    facts = audit_facts(pg_database_url)
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]


def mcp_request(gateway: GatewayServer, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A 2026-07-28 request declaring the tasks extension (as tests/e2e/test_mcp_tasks.py)."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "kill-test", "version": "1"},
    }
    response = httpx.post(
        gateway.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": envelope}},
        headers={
            **gateway.headers(sub="agent:kill"),
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
            "Mcp-Name": str(params.get("name", params.get("taskId", ""))),
        },
        timeout=60,
    )
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return dict(json.loads(data[-1]))
    return dict(response.json())


def lease_owner(url: str, run_id: str) -> str | None:
    found = rows(url, f"SELECT lease_owner FROM runs WHERE id = '{run_id}'")
    return str(found[0][0]) if found and found[0][0] is not None else None


def attempts_of(url: str, run_id: str, step_id: str) -> list[str]:
    """The workers of the step's attempts, in order."""
    found = rows(
        url,
        "SELECT worker FROM step_attempts WHERE run_id = "
        f"'{run_id}' AND step_id = '{step_id}' ORDER BY attempt",
    )
    return [str(row[0]) for row in found]
