"""Replicas under faults, as processes on loopback: two gateway replicas and two
`gateway worker` processes on one PostgreSQL under a bounded load, while the database
is restarted (a crash: `pg_ctl stop -m immediate`).

While the database is down calls are refused with 503, none is forwarded without its
attempt and decision in the log; afterwards the log is one chain that verifies, with
no entry lost or duplicated (outcomes of calls forwarded just before the crash
included; only an outcome in the very COMMIT the crash cut off may be lost, and the
verifier then reports that call's outcome as unknown), and the same processes serve
again. Runs held by both workers mid-step
through the outage finish afterwards, each effect once. The cluster is the test's own
(tests/support/pg_cluster.py): the suite's shared server is never touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from gateway.errors import STORAGE_RETRY_AFTER_S
from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import connect
from tests.support.pg_cluster import PostgresCluster
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.replicas import Answer, CallLoad, Deployment, settled_audit_facts
from tests.support.waiting import TIMEOUT_S, eventually

pytestmark = [pytest.mark.postgres]

CLIENTS = 4
# The load spans the outage: it runs until calls are answered again after it, bounded
# in count. Not a fixed count: on a busy machine a few hundred calls could all finish
# before the database is even down, and the test would see no refusal.
LOAD_BOUND = 3000
AFTER_OUTAGE = 60  # calls once the database is back, through both replicas
REFUSED_WHILE_DOWN = 8  # 503s seen before the database comes back
RUNS = 2  # one per worker process (each runs one loop): both mid-step in the outage
EXECUTOR = {"workers": 1, "poll_s": 0.1, "lease_s": 3}


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.create()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def deployment(
    tmp_path: Path, cluster: PostgresCluster, upstream: McpUpstreamServer
) -> Iterator[tuple[Deployment, str]]:
    url = cluster.create_database(f"faults_{uuid.uuid4().hex[:8]}")
    deployment = Deployment.configure(
        tmp_path,
        replicas=2,
        storage_url=url,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 30}],
        policy=write_policy(tmp_path, [{"role": "agent", "tool": "up__*"}]),
        executor={"workers": 0},
    )
    deployment.start(workers=2, worker_executor=EXECUTOR)
    yield deployment, url
    deployment.stop()
    if not cluster.running():
        cluster.start()


def submit_run(gateway: GatewayServer, label: str, group: str) -> str:
    """A run whose first step waits (in the upstream) until the test releases ``group``."""
    gate = {"group": group, "count": RUNS + 1}
    plan = {
        "name": "under-faults",
        "steps": [
            {"id": "gate", "tool": "up__rendezvous", "arguments": gate},
            {"id": "first", "tool": "up__effect", "arguments": {"label": label}, "needs": ["gate"]},
            {
                "id": "then",
                "tool": "up__echo",
                "arguments": {"text": f"then-{label}"},
                "needs": ["first"],
            },
        ],
    }
    submitted = httpx.post(
        f"{gateway.url}/v1/runs",
        json={"plan": plan},
        headers={**gateway.headers(sub="agent:load"), "Idempotency-Key": label},
        timeout=60,
    )
    assert submitted.status_code == 201, submitted.text
    return str(submitted.json()["run_id"])


def run_status(gateway: GatewayServer, run_id: str) -> str:
    response = httpx.get(
        f"{gateway.url}/v1/runs/{run_id}", headers=gateway.headers(sub="agent:load"), timeout=60
    )
    return str(response.json()["status"]) if response.status_code == 200 else ""


def ok(answer: Answer) -> bool:
    return answer.status == 200


def test_postgres_restarted_mid_load(
    deployment: tuple[Deployment, str], cluster: PostgresCluster, upstream: McpUpstreamServer
) -> None:
    replicas, url = deployment
    gateways = replicas.gateways
    pids = replicas.alive()
    marker = f"pg-restart-{uuid.uuid4().hex[:6]}"
    group = f"{marker}-gate"
    runs = [submit_run(gateways[i % 2], f"{marker}-run-{i}", group) for i in range(RUNS)]
    eventually(
        lambda: sum(1 for c in upstream.calls() if c["arguments"].get("group") == group) >= RUNS,
        "both workers mid-step",
        detail=replicas.logs,
    )

    load = CallLoad(
        gateways, tool="up__echo", total=LOAD_BOUND, clients=CLIENTS, marker=marker
    ).start()
    eventually(lambda: load.count(ok) >= 40, "calls answered before the outage")
    cluster.stop("immediate")  # a crash: connections cut, no shutdown checkpoint
    refused_before = load.count(lambda a: a.status == 503)
    eventually(
        lambda: (
            load.count(lambda a: a.status == 503) >= refused_before + REFUSED_WHILE_DOWN
            or len(load.answers) >= LOAD_BOUND
        ),
        "calls refused while the database is down",
        detail=replicas.logs,
    )
    # Readiness says why: the database cannot be reached.
    for gateway in gateways:
        assert httpx.get(f"{gateway.url}/readyz", timeout=30).status_code == 503
    more_runs = [submit_run_or_refused(gateways[0], f"{marker}-late-{i}") for i in range(2)]
    mcp_answer = anyio.run(mcp_call, gateways[1], f"{marker}-mcp")
    cluster.start()
    resumed_from = len(load.answers)
    eventually(
        lambda: any(ok(a) for a in load.answers[resumed_from:]) or len(load.answers) >= LOAD_BOUND,
        "the load answered again",
        detail=replicas.logs,
    )
    load.stop()
    answers = load.wait(TIMEOUT_S * 5)

    # Service resumes in the same processes, through both replicas.
    probes: list[list[Answer]] = []

    def serving_again() -> bool:
        probes.append(echo_load(gateways, f"{marker}-probe-{len(probes)}", len(gateways)))
        return all(ok(a) for a in probes[-1])

    eventually(
        serving_again,
        "a call through each replica answers 200 again",
        detail=lambda: f"{probes[-1]}\n{replicas.logs()}",
    )
    answers_after = echo_load(gateways, f"{marker}-after", AFTER_OUTAGE)
    assert all(ok(a) for a in answers_after), [a for a in answers_after if not ok(a)][:3]
    assert replicas.alive() == pids, "a process died or was restarted"

    # MCP: retry later (docs/mcp.md), neither a tool result nor an internal error.
    assert mcp_answer == f"error -32000 retry_after_s={STORAGE_RETRY_AFTER_S}", mcp_answer

    statuses = {a.status for a in answers}
    assert statuses <= {200, 503}, [a for a in answers if a.status not in (200, 503)][:3]
    refused = [a for a in answers if a.status == 503]
    assert len(refused) >= REFUSED_WHILE_DOWN, len(refused)
    assert all(json.loads(a.body)["error"]["code"] for a in refused)

    # The runs held through the outage go on (their leases lapsed meanwhile: a worker
    # whose fencing token is stale writes nothing; the step is repeated with its key).
    released = httpx.post(
        f"{gateways[0].url}/v1/tools/up__rendezvous/call",
        json={"arguments": {"group": group, "count": RUNS + 1}},
        headers=gateways[0].headers(sub="agent:load"),
        timeout=TIMEOUT_S,
    )
    assert released.status_code == 200, released.text
    runs += [r for r in more_runs if r]
    for run_id in runs:
        eventually(
            lambda run_id=run_id: run_status(gateways[1], run_id) in ("succeeded", "failed"),
            f"run {run_id} finished",
            detail=replicas.logs,
        )
        assert run_status(gateways[1], run_id) == "succeeded"

    never_ran = replicas.refused_after_unknown_commit()
    # An outcome for every allowed call, also one whose COMMIT the crash cut off (kept,
    # and written once the database is back unless the database had kept it).
    facts = settled_audit_facts(url)
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]
    forwarded = {
        c["arguments"]["text"]
        for c in upstream.calls()
        if c["tool"] == "echo" and c["arguments"]["text"].startswith(marker)
    }
    audited = {text for text, refs in facts.refs_by_text.items() if set(refs) & facts.allowed}
    assert not forwarded - audited, "forwarded unaudited: " + str(sorted(forwarded - audited)[:3])
    for answer in [*answers, *answers_after]:
        refs = facts.refs_by_text.get(answer.text, [])
        assert len(refs) <= 1, (answer.text, refs)
        if ok(answer):
            assert len(refs) == 1 and answer.text in forwarded, answer
            assert facts.entries[("call.outcome", refs[0])] == 1, ("lost", answer)
    # A call whose attempt and decision were in the COMMIT the crash cut off was not
    # forwarded, and the log says so (the database may have kept the two entries).
    assert never_ran <= facts.not_forwarded, sorted(never_ran - facts.not_forwarded)[:5]
    texts_by_ref = {ref: text for text, refs in facts.refs_by_text.items() for ref in refs}
    ran = {texts_by_ref.get(ref) for ref in facts.not_forwarded} & forwarded
    assert not ran, f"forwarded, yet logged as not forwarded: {sorted(ran)[:3]}"
    effects = [
        json.loads(line)
        for line in Path(str(upstream.call_log) + ".effects.jsonl").read_text().splitlines()
    ]
    labels = [e["label"] for e in effects if e["label"].startswith(marker)]
    assert sorted(labels) == sorted(set(labels)) and len(labels) == len(runs), labels

    verified = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "--db", url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 2,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def mcp_call(gateway: GatewayServer, text: str) -> str:
    """An MCP tools/call while the database is down: what the client gets."""
    async with connect(gateway.mcp_url, gateway.token(sub="agent:load"), "2026-07-28") as client:
        try:
            result = await client.call_tool("up__echo", {"text": text})
        except MCPError as exc:
            data = exc.error.data if isinstance(exc.error.data, dict) else {}
            return f"error {exc.error.code} retry_after_s={data.get('retry_after_s')}"
    details = (result.meta or {}).get(META_KEY, {})
    return f"result isError={result.is_error} code={details.get('error', {}).get('code')}"


def submit_run_or_refused(gateway: GatewayServer, label: str) -> str | None:
    """A submission while the database is down: refused with 503, or (had the database
    come back already) created."""
    plan = {
        "name": "late",
        "steps": [{"id": "s", "tool": "up__effect", "arguments": {"label": label}}],
    }
    response = httpx.post(
        f"{gateway.url}/v1/runs",
        json={"plan": plan},
        headers={**gateway.headers(sub="agent:load"), "Idempotency-Key": label},
        timeout=60,
    )
    assert response.status_code in (201, 503), response.text
    return str(response.json()["run_id"]) if response.status_code == 201 else None


def echo_load(gateways: list[GatewayServer], marker: str, total: int) -> list[Answer]:
    load = CallLoad(gateways, tool="up__echo", total=total, clients=CLIENTS, marker=marker)
    return load.start().wait(TIMEOUT_S * 2)
