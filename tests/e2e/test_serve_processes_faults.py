"""`gateway serve --processes 2` when its processes keep failing (docs/decisions/0035,
"Amended"): the stdio upstreams a killed process leaves behind are adopted by the
supervisor, which reaps the one that ends at its input's end and ends the one that
does not; a replacement that cannot start is retried with backoff while the
other process keeps serving; a slot killed more often than `server.restarts` allows
stops the serve, non-zero, naming the slot and the signals seen.

The tests run in order on one serve: each kills processes of it. The window is an
hour, so that how long a start takes on this machine never decides whether the limit
is reached; only the number of exits does.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import GatewayServer, write_policy
from tests.support.serve_processes import (
    START_S,
    children,
    listening_sockets,
    pids_now,
    pinned_to_each,
    ready_slots,
    serve_all,
    socket_inodes,
)
from tests.support.waiting import TIMEOUT_S, eventually

PROCESSES = 2
# New connections while one slot has no process: the kernel hashes each by its port,
# so with the dead socket still in the group about half of these would wait in it.
FRESH = 16
LIMIT = 3  # replacements of one slot: a margin for the failed starts of the retry test
GRANTS = [{"role": "agent", "tool": "local__echo"}]
BROKEN = "package gateway.broken\n\nthis is not rego {\n"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adopted")


@pytest.fixture(scope="module")
def gateway(reports: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("processes-faults")
    command = [sys.executable, "-m", "tests.support.orphan_upstream", str(reports)]
    server = GatewayServer.configure(
        directory / "gateway",
        upstreams=[
            {
                "name": "local",
                "transport": "stdio",
                "command": [*command, str(directory / "stdio.calls.jsonl")],
            },
            {
                "name": "stubborn",
                "transport": "stdio",
                "command": [*command, str(directory / "stubborn.calls.jsonl"), "--stubborn"],
            },
        ],
        policy=write_policy(directory, GRANTS),
    )
    server.config["server"]["restarts"] = {
        "limit": LIMIT,
        "window_s": 3600,
        "backoff_s": 2,
        "backoff_max_s": 4,
    }
    server.config["policy"]["watch"] = False  # a broken file is seen at start only
    serve_all(server, PROCESSES)
    yield server
    if server.process and server.process.popen.poll() is None:
        server.stop()


def supervisor(gateway: GatewayServer) -> int:
    assert gateway.process is not None
    return gateway.process.popen.pid


def ready_again(gateway: GatewayServer, slot: int, old: int) -> int:
    """The pid of ``slot``'s next process, once it is ready."""

    def new_pid() -> int | None:
        pid = ready_slots(gateway.log()).get(slot)
        return pid if pid not in (None, old) else None

    return eventually(
        new_pid, f"a new process ready in slot {slot}", timeout_s=START_S, detail=gateway.log
    )


def test_a_killed_process_leaves_no_orphan_and_no_zombie(
    gateway: GatewayServer, reports: Path
) -> None:
    victim = ready_slots(gateway.log())[0]

    def its_upstreams() -> dict[str, int] | None:
        found = {
            ("stubborn" if b"--stubborn" in cmd else "polite"): pid
            for pid, (_, cmd) in children(victim).items()
            if b"orphan_upstream" in cmd
        }
        return found if len(found) == 2 else None

    upstreams = eventually(
        its_upstreams, "the killed process's stdio upstreams", detail=gateway.log
    )
    # None holds the gateway's listening socket: it could accept the gateway's own
    # clients, and would keep a dead process's socket in the port's group.
    listening = listening_sockets(int(gateway.url.rsplit(":", 1)[1]))
    assert listening and socket_inodes(victim) & listening
    for upstream in upstreams.values():
        assert not socket_inodes(upstream) & listening
    os.kill(victim, signal.SIGKILL)

    # Its stdin ended with the process: each reports its new parent; the polite one
    # exits, the stubborn one ignores SIGTERM and is ended by SIGKILL.
    for upstream in upstreams.values():
        report = reports / str(upstream)
        eventually(report.exists, "an orphaned upstream's new parent", detail=gateway.log)
        assert int(report.read_text()) == supervisor(gateway)  # the subreaper, not PID 1
        gone = Path(f"/proc/{upstream}")
        eventually(
            lambda gone=gone: not gone.exists(),
            "the orphan ended and reaped (no zombie left)",
            detail=lambda: f"{children(supervisor(gateway))}\n{gateway.log()}",
        )
    stubborn = upstreams["stubborn"]
    assert (reports / f"{stubborn}.sigterm").exists()  # asked first
    log = gateway.log()
    assert f"orphaned process {stubborn} outlived its input" in log
    assert "sending SIGKILL" in log, log[-3000:]
    assert "reaped 1 orphaned process" in log or "reaped 2 orphaned process" in log

    ready_again(gateway, 0, victim)
    assert not [p for p, (state, _) in children(supervisor(gateway)).items() if state == "Z"]


def test_a_replacement_that_cannot_start_is_retried_while_the_other_serves(
    gateway: GatewayServer,
) -> None:
    slots = ready_slots(gateway.log())
    healthy, victim = slots[0], slots[1]
    pinned = pinned_to_each(gateway, PROCESSES)[healthy]
    broken = Path(gateway.config["policy"]["path"]) / "gateway" / "broken.rego"
    broken.write_text(BROKEN)
    try:
        os.kill(victim, signal.SIGKILL)
        eventually(
            lambda: "before it was ready (its error is above)" in gateway.log(),
            "a replacement that could not start",
            timeout_s=START_S,
            detail=gateway.log,
        )
        # The serve goes on: the healthy process answers meanwhile, on the connections
        # it had and on every new one (none is sent to the dead process's socket).
        answer = pinned.call("local__echo", {"text": "still serving"})
        assert answer.status_code == 200, answer.text
        assert pinned.pid() == healthy
        assert {fresh_connection_pid(gateway) for _ in range(FRESH)} == {healthy}
    finally:
        broken.unlink()
    ready_again(gateway, 1, victim)
    assert gateway.process is not None and gateway.process.popen.poll() is None
    log = gateway.log()
    assert "crash loop" not in log
    assert "gateway process 1 (pid" in log and "starting another in" in log, log[-3000:]
    answer = pinned.call("local__echo", {"text": "both again"})
    assert answer.status_code == 200, answer.text
    pinned.close()


def fresh_connection_pid(gateway: GatewayServer) -> int:
    """The pid of the process that answers ``/readyz`` on a new connection."""
    with httpx.Client(base_url=gateway.url, timeout=TIMEOUT_S) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    return int(response.json()["process"]["pid"])


def test_a_slot_that_keeps_crashing_stops_the_serve(gateway: GatewayServer) -> None:
    assert gateway.process is not None
    others = set(pids_now(gateway))
    # Slot 0 exited once (the first test); LIMIT more exits are one too many.
    for kill in range(LIMIT):
        victim = ready_slots(gateway.log())[0]
        os.kill(victim, signal.SIGKILL)
        if kill < LIMIT - 1:
            ready_again(gateway, 0, victim)
    code = gateway.process.popen.wait(TIMEOUT_S * 2)
    log = gateway.log()
    assert code == 1, log[-3000:]
    message = f"gateway: error: gateway process 0 exited {LIMIT + 1} times within 3600 s"
    assert message in log, log[-3000:]
    assert f"({', '.join(['signal SIGKILL'] * (LIMIT + 1))})" in log
    assert f"server.restarts.limit allows {LIMIT}" in log
    for pid in others:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the supervisor"
    assert "Traceback" not in log, log[-3000:]
