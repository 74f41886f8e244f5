"""`gateway serve` with two server processes sharing one port, on SQLite and on
PostgreSQL (docs/decisions/0035).

One supervisor, two gateways accepting from one socket, one database. Calls land on
both processes and the log they append to together is one chain that verifies
offline; an approval requested through one process and granted through the other
releases the held call; a process killed with ``kill -9`` under load is replaced, and
no answered call is lost or audited twice; SIGTERM drains both and the supervisor
exits 0. A process that cannot start stops the whole serve instead.

Which process serves a request is the kernel's choice: a test reaches a given
process by keeping one connection open to it (tests.support.serve_processes). A scrape
of ``/metrics`` on either process counts the calls of both.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.processes import GatewayServer, McpUpstreamServer, free_port, spawn, write_policy
from tests.support.replicas import AuditFacts, CallLoad, audit_facts
from tests.support.serve_processes import (
    HOLD_S,
    START_S,
    Pinned,
    calls_counted,
    pids_now,
    serve_all,
)
from tests.support.serve_processes import pinned_to_each as pinned_to
from tests.support.waiting import TIMEOUT_S, eventually

PROCESSES = 2
GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
]
# Bounds of the loads: a few dozen calls, a few clients.
CONCURRENT_CALLS = 60
KILL_CALLS = 80
CLIENTS = 4
# A process starts in seconds, but in a minute or more on a loaded 2-core machine.
UNKNOWN_REF = re.compile(r"ref='([^']+)'")  # of the verifier's OutcomeUnknown
READY = re.compile(r"gateway process \d+ \(pid \d+\) ready")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def storage_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('processes-db') / 'gateway.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("processes-upstream"))
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    storage_url: str, upstream: McpUpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    """`gateway serve --config FILE` with server.processes: 2, both processes ready."""
    directory = tmp_path_factory.mktemp("processes")
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 30}],
        policy=write_policy(directory, GRANTS),
        storage_url=storage_url,
    )
    server.config["approvals"] = {"hold_s": HOLD_S, "sweep_interval_s": 1}
    serve_all(server, PROCESSES)
    yield server
    if server.process and server.process.popen.poll() is None:
        server.stop()


def pinned_to_each(gateway: GatewayServer) -> dict[int, Pinned]:
    return pinned_to(gateway, PROCESSES)


def verify_offline(storage_url: str) -> None:
    verified = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "--db", storage_url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_calls_land_on_both_processes_and_the_log_is_one_chain(
    gateway: GatewayServer, storage_url: str, upstream: McpUpstreamServer
) -> None:
    marker = f"both-{uuid.uuid4().hex[:6]}"
    pinned = pinned_to_each(gateway)
    assert set(pinned) == pids_now(gateway)
    for pid, connection in pinned.items():
        for n in range(3):
            answer = connection.call("up__echo", {"text": f"{marker}-{pid}-{n}"})
            assert answer.status_code == 200, answer.text
        connection.close()

    load = CallLoad(
        [gateway],
        tool="up__echo",
        total=CONCURRENT_CALLS,
        clients=CLIENTS,
        marker=f"{marker}-load",
    )
    answers = load.start().wait(TIMEOUT_S * 2)
    assert [a.status for a in answers] == [200] * CONCURRENT_CALLS, answers[:3]

    def settled() -> AuditFacts | None:
        facts = audit_facts(storage_url)
        return None if facts.outcome_unknown else facts

    facts = eventually(settled, "every call's outcome in the log")
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]
    texts = [t for t in facts.refs_by_text if t.startswith(marker)]
    assert len(texts) == PROCESSES * 3 + CONCURRENT_CALLS
    assert all(len(facts.refs_by_text[t]) == 1 for t in texts)
    verify_offline(storage_url)


def test_an_approval_granted_through_one_process_releases_a_call_held_in_the_other(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    key = f"held-{uuid.uuid4().hex[:6]}"
    (holder_pid, holder), (approver_pid, approver) = pinned_to_each(gateway).items()
    held: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: held.append(holder.call("up__write", {"key": key, "value": "v"})),
        daemon=True,
    )
    thread.start()
    bob = gateway.headers(sub="user:bob", roles=("approver",))

    def pending() -> str | None:
        listed = approver.client.get("/v1/approvals?status=pending", headers=bob).json()
        ids = [a["id"] for a in listed["approvals"] if a["arguments"].get("key") == key]
        return ids[0] if ids else None

    approval_id = eventually(pending, "the held call's approval, seen through the other")
    assert approver.pid() == approver_pid != holder_pid

    def approved() -> httpx.Response | None:
        # Listed as soon as it exists, decidable once its request is in the audit log
        # ("not ready yet; try again").
        decided = approver.client.post(f"/v1/approvals/{approval_id}/approve", headers=bob)
        return None if "not ready yet" in decided.text else decided

    decided = eventually(approved, "the approval decided, once its request is audited")
    assert decided.status_code == 200, decided.text
    assert approver.pid() == approver_pid

    thread.join(HOLD_S + 30)
    assert held, "the held call did not come back"
    assert held[0].status_code == 200, held[0].text
    assert held[0].json()["result"]["content"][0]["text"] == f"wrote {key}"
    assert sum(1 for c in upstream.calls() if c["arguments"].get("key") == key) == 1
    holder.close()
    approver.close()


def test_a_scrape_of_either_process_counts_the_calls_of_both(gateway: GatewayServer) -> None:
    pinned = pinned_to_each(gateway)
    before = {pid: calls_counted(connection) for pid, connection in pinned.items()}
    assert len(set(before.values())) == 1, before  # the same totals, whichever answers
    for n, (pid, connection) in enumerate(pinned.items()):
        for _ in range(n + 2):  # 2 calls through one process, 3 through the other
            answer = connection.call("up__echo", {"text": f"metrics-{pid}"})
            assert answer.status_code == 200, answer.text
    total = sum(n + 2 for n in range(PROCESSES))
    for pid, connection in pinned.items():
        assert connection.pid() == pid
        assert calls_counted(connection) == before[pid] + total, pid
        connection.close()


def test_a_process_killed_under_load_is_replaced_and_no_call_is_lost_or_doubled(
    gateway: GatewayServer, storage_url: str, upstream: McpUpstreamServer
) -> None:
    marker = f"kill-{uuid.uuid4().hex[:6]}"
    before = pids_now(gateway)
    assert len(before) == PROCESSES
    victim = min(before)
    load = CallLoad(
        [gateway], tool="up__echo", total=KILL_CALLS, clients=CLIENTS, marker=marker
    ).start()
    eventually(lambda: load.count(lambda a: a.status == 200) >= KILL_CALLS // 4, "calls answered")
    os.kill(victim, signal.SIGKILL)
    # A call whose connection the kernel hashed to the killed process's socket before
    # the supervisor took that socket out of the port is reset with it (moved to the
    # other process where the host sets net.ipv4.tcp_migrate_req); every later one
    # goes to the living process (docs/decisions/0035, point 5).
    answers = load.wait(START_S + TIMEOUT_S)

    def replaced_() -> set[int] | None:
        now = pids_now(gateway)
        return now if len(now) == PROCESSES and victim not in now else None

    replaced = eventually(
        replaced_, "a new process for the killed one", timeout_s=START_S, detail=gateway.log
    )
    eventually(
        lambda: len(READY.findall(gateway.log())) >= PROCESSES + 1,
        "the new process ready",
        timeout_s=START_S,
        detail=gateway.log,
    )
    assert "starting another" in gateway.log()
    # Both serve again.
    pinned = pinned_to_each(gateway)
    assert set(pinned) == replaced
    for connection in pinned.values():
        assert connection.call("up__echo", {"text": f"{marker}-after"}).status_code == 200
        connection.close()

    # Calls cut with the killed process got no answer; every other call succeeded.
    assert {a.status for a in answers} <= {200, None}, [a for a in answers if a.status != 200][:3]
    cut = {a.text for a in answers if a.status is None}

    def settled_but_killed() -> tuple[AuditFacts, set[str]] | None:
        """The facts once every outcome the log lacks is of a call the killed process
        had: one cut (no answer), or one it answered in its last milliseconds, whose
        outcome was still on its way to the log (not awaited: docs/decisions/0026)."""
        facts = audit_facts(storage_url)
        unknown = {m.group(1) for u in facts.outcome_unknown if (m := UNKNOWN_REF.search(u))}
        cut_refs = {r for t in cut for r in facts.refs_by_text.get(t, [])}
        return (facts, unknown) if len(unknown - cut_refs) <= CLIENTS else None

    facts, unknown = eventually(settled_but_killed, "every outcome in the log but the killed")
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]
    forwarded = [c["arguments"]["text"] for c in upstream.calls() if c["tool"] == "echo"]
    # A cut call reached the log only if it was in flight in the killed process (one per
    # client at most); the others were reset in its socket's queue, read by no process:
    # not in the log, never forwarded.
    reached = {t for t in cut if facts.refs_by_text.get(t)}
    assert len(reached) <= CLIENTS, reached
    assert not [t for t in cut - reached if t in forwarded], cut - reached
    for answer in answers:
        refs = facts.refs_by_text.get(answer.text, [])
        assert len(refs) <= 1, (answer.text, refs)
        assert forwarded.count(answer.text) <= 1, answer.text
        if answer.status == 200:
            # Not lost: its attempt and decision are in the log, and its outcome too
            # unless the log says it does not know it.
            assert len(refs) == 1, ("answered but not audited", answer)
            outcomes = facts.entries[("call.outcome", refs[0])]
            assert outcomes == 1 or (outcomes == 0 and refs[0] in unknown), answer
    verify_offline(storage_url)


def test_sigterm_stops_every_process_cleanly(gateway: GatewayServer, storage_url: str) -> None:
    pids = pids_now(gateway)
    assert len(pids) == PROCESSES
    assert gateway.process is not None
    assert gateway.process.stop(timeout=TIMEOUT_S) == 0, gateway.log()[-3000:]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the supervisor"
    log = gateway.log()
    assert log.count("Application shutdown complete") >= PROCESSES, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    verify_offline(storage_url)


def test_a_process_that_cannot_start_stops_the_serve(tmp_path: Path) -> None:
    """The database unreachable: the first process fails, and the serve exits non-zero
    with its error, starting nothing else and nothing again."""
    server = GatewayServer.configure(
        tmp_path / "gateway",
        upstreams=[],
        policy=write_policy(tmp_path, GRANTS),
        storage_url=f"postgresql+psycopg://nobody:nothing@127.0.0.1:{free_port()}/none",
    )
    server.config["server"]["processes"] = PROCESSES
    server.config_path.write_text(yaml.safe_dump(server.config))
    process = spawn(
        [sys.executable, "-m", "gateway", "serve", "--config", str(server.config_path)],
        tmp_path / "gateway.log",
    )
    try:
        code = process.popen.wait(TIMEOUT_S * 2)
    finally:
        process.kill()
    log = process.log()
    assert code not in (0, None), log
    assert "gateway process 0 exited" in log and "before it was ready" in log, log
    assert "starting another" not in log and "gateway process 1" not in log, log
