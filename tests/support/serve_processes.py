"""Reaching and finding the server processes of `gateway serve --processes N` from a
test (docs/decisions/0035).

Which process serves a request is the kernel's choice: a test reaches a given process
by keeping one connection open to it (`Pinned`), and checks by ``/readyz``'s
``process.pid`` which one that is. `pids_now` lists the processes from /proc, and
`ready_slots` says which slot each ready process serves, from the supervisor's log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GatewayServer
from tests.support.waiting import TIMEOUT_S, eventually

HOLD_S = 120  # far longer than a test takes to decide
# A whole gateway process's start on a loaded 2-core machine (imports, migrations,
# the policy's conformance check) takes far longer than one request.
START_S = TIMEOUT_S * 5
READY = re.compile(r"gateway process (\d+) \(pid (\d+)\) ready")


class Pinned:
    """One kept-alive connection to the gateway, so to the one process that accepted
    it: `pid` says which."""

    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway
        self.client = httpx.Client(
            base_url=gateway.url,
            timeout=HOLD_S + 30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    def pid(self) -> int:
        response = self.client.get("/readyz")
        assert response.status_code == 200, response.text
        return int(response.json()["process"]["pid"])

    def call(self, tool: str, arguments: dict[str, Any], **token: Any) -> httpx.Response:
        """A call on this connection, checking it stayed on this connection's process
        (a connection idle past uvicorn's keep-alive is closed, and a new one may reach
        the other process)."""
        before = self.pid()
        response = self.client.post(
            f"/v1/tools/{tool}/call",
            json={"arguments": arguments},
            headers=self.gateway.headers(**(token or {"sub": "agent:processes"})),
        )
        assert self.pid() == before, "the connection moved to another process"
        return response

    def close(self) -> None:
        self.client.close()


def pinned_to_each(gateway: GatewayServer, processes: int) -> dict[int, Pinned]:
    """A `Pinned` connection to each server process, by pid (new connections until
    each process accepted one; bounded)."""
    found: dict[int, Pinned] = {}
    for _ in range(50):
        pinned = Pinned(gateway)
        pid = pinned.pid()
        if pid in found:
            pinned.close()
        else:
            found[pid] = pinned
        if len(found) == processes:
            return found
    raise AssertionError(f"50 connections reached only the processes {sorted(found)}")


def children(parent: int) -> dict[int, tuple[str, bytes]]:
    """The children of ``parent``, by pid: their state (``Z`` a zombie) and command
    line (empty for a zombie)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        # After the name: state, then the parent's pid.
        if fields[1] == str(parent):
            found[int(stat.parent.name)] = (fields[0], command)
    return found


def listening_sockets(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` (Linux: /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            # local address (hex ip:port), remote address, state (0A: listening), …
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def pids_now(gateway: GatewayServer) -> set[int]:
    """The pids of the server processes: the supervisor's spawned children (not its
    multiprocessing resource tracker, nor an orphan it adopted)."""
    assert gateway.process is not None
    return {
        pid
        for pid, (state, command) in children(gateway.process.popen.pid).items()
        if state != "Z" and b"spawn_main" in command
    }


def ready_slots(log: str) -> dict[int, int]:
    """The pid each slot's process had when it was last reported ready."""
    return {int(slot): int(pid) for slot, pid in READY.findall(log)}


def serve_all(server: GatewayServer, processes: int) -> GatewayServer:
    """Starts ``server`` with ``processes`` server processes and waits until every one
    is ready (the supervisor says so once)."""
    server.config["server"]["processes"] = processes
    server.start()
    eventually(
        lambda: f"({processes} processes)" in server.log(),
        "every server process ready",
        timeout_s=START_S,
        detail=server.log,
    )
    return server


def calls_counted(pinned: Pinned) -> float:
    """gateway_calls_total over every label, as a scrape through ``pinned`` reports it."""
    response = pinned.client.get("/metrics")
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "gateway_calls_total"
    )
