"""A gateway killed with `kill -9` under load leaves an audit log that verifies, and
every call that reached the upstream has its attempt and allowing decision in it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from gateway.audit import iter_entries
from gateway.audit.export import database_source
from gateway.store import create_engine
from gateway.tlog.verifier import verify_log
from tests.e2e.conftest import GRANTS
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually

CALLERS = 8
# The kill comes once this many calls reached the upstream (under load, however long
# that takes on this machine), so it lands among calls in flight.
FORWARDED_BEFORE_KILL = 50


def test_kill_9_under_load_leaves_a_verifiable_log_with_every_forwarded_call(
    tmp_path: Path, mcp_upstream: McpUpstreamServer
) -> None:
    server = GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy=write_policy(tmp_path, GRANTS),
    )
    server.config["audit"].update({"checkpoint_every_entries": 50, "checkpoint_every_s": 0.5})
    server.start()
    token = server.token(sub="agent:load")
    marker = f"crash-{time.monotonic_ns()}"
    stop = threading.Event()
    sent: list[str] = []

    def forwarded() -> set[str]:
        return {
            c["arguments"]["text"]
            for c in mcp_upstream.calls()
            if c["tool"] == "echo" and c["arguments"]["text"].startswith(marker)
        }

    def caller(number: int) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                text = f"{marker}-{number}-{i}"
                sent.append(text)
                try:
                    client.post(
                        f"{server.url}/v1/tools/up__echo/call",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"arguments": {"text": text}},
                    )
                except httpx.HTTPError:
                    return  # the gateway is gone

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    eventually(
        lambda: len(forwarded()) >= FORWARDED_BEFORE_KILL, "calls forwarded", interval_s=0.1
    )
    assert server.process is not None
    os.kill(server.process.popen.pid, signal.SIGKILL)  # no shutdown, no final flush
    server.process.popen.wait(10)
    stop.set()
    for thread in threads:
        thread.join(10)

    reached = forwarded()

    engine = create_engine(server.config["storage"]["url"])
    try:
        report = verify_log(database_source(engine))
        assert report.ok, [f.message for f in report.faults]
        attempts: dict[str, str] = {}
        allowed: set[str] = set()
        for entry in iter_entries(engine):
            if entry.payload is None:
                continue
            if entry.kind == "call.attempt":
                attempts[entry.ref] = json.dumps(entry.payload["arguments"])
            elif entry.kind == "call.decision" and entry.payload["decision"]["allow"]:
                allowed.add(entry.ref)
    finally:
        engine.dispose()
    recorded = {json.loads(args)["text"] for ref, args in attempts.items() if ref in allowed}
    missing = reached - recorded
    assert not missing, (
        f"{len(missing)} forwarded calls without attempt+decision: {sorted(missing)[:3]}"
    )
