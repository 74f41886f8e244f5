"""Several server processes (docs/decisions/0035): the config's rule for sessions, and
the sockets `gateway serve --processes N` binds."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from typing import Any

import pytest

from gateway.cli.serve import PortInUse, bind_processes
from gateway.config import parse_config
from gateway.errors import ConfigError

IDENTITY: dict[str, Any] = {
    "issuers": [{"issuer": "https://idp.example", "jwks_url": "https://idp.example/jwks"}]
}


def config(**sections: Any) -> Any:
    return parse_config({"identity": IDENTITY, **sections})


def test_one_process_by_default_with_sessions_on() -> None:
    loaded = config()
    assert loaded.server.processes == 1
    assert loaded.mcp_sessions.enabled is True


def test_several_processes_turn_sessions_off_unless_asked() -> None:
    loaded = config(server={"processes": 4})
    assert loaded.mcp_sessions.enabled is False
    assert loaded.mcp_sessions.max_sessions == loaded.mcp.sessions.max_sessions
    assert config(server={"processes": 4}, mcp={"sessions": {"enabled": False}}).mcp_sessions


def test_sessions_asked_for_with_several_processes_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        config(server={"processes": 2}, mcp={"sessions": {"enabled": True}})
    assert "server.processes: 1" in str(caught.value)


@pytest.mark.parametrize("processes", [0, 65])
def test_processes_out_of_range_are_refused(processes: int) -> None:
    with pytest.raises(ConfigError):
        config(server={"processes": processes})


def test_a_group_of_sockets_shares_one_port() -> None:
    sockets = bind_processes("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(sockets) == 3 and len(ports) == 1
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_a_port_held_by_another_group_is_refused_not_joined() -> None:
    first = bind_processes("127.0.0.1", 0, 2)
    try:
        for s in first:
            s.listen()
        port = first[0].getsockname()[1]
        with pytest.raises(PortInUse):
            bind_processes("127.0.0.1", port, 2)
    finally:
        for s in first:
            s.close()


def _stops_itself(supervisor_pid: str) -> int:
    """The exit status of a process that checks its supervisor is ``supervisor_pid``."""
    code = (
        "import os, sys\n"
        "from gateway.cli.serve_process import _stop_with_supervisor\n"
        f"_stop_with_supervisor({supervisor_pid})\n"
        "sys.exit(0)\n"
    )
    return subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode


def test_a_server_process_stops_itself_only_when_its_supervisor_is_gone() -> None:
    # Its parent is the supervisor: it serves, also where the supervisor is PID 1 (a
    # container whose entrypoint is `gateway`), which the kernel reports the same way
    # as "reparented to init after the supervisor died".
    assert _stops_itself("os.getppid()") == 0
    # Its parent is not the supervisor it was started by: that one died first.
    assert _stops_itself("os.getppid() + 1") == -signal.SIGTERM
