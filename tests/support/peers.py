"""Third-party MCP peers and the processes around them, for the interoperability tests.

- `ConformanceUpstream`: our server side of the official conformance suite
  (tests/support/conformance_upstream.py), over Streamable HTTP.
- `EverythingServer`: ``@modelcontextprotocol/server-everything`` from tests/peers, the
  MCP reference server, over Streamable HTTP (stdio is started by the gateway itself
  from `everything_stdio_command`).
- `BearerProxy`: tests/support/bearer_proxy.py in front of the gateway, for clients
  that cannot send an Authorization header.
- `run_node_client`: one of the small TypeScript-SDK client scripts in
  tests/peers/clients/, on the Node 22 that tests/peers carries.

Each runs as its own process on a loopback port, like `tests.support.processes`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.conformance import NODE, PEERS
from tests.support.processes import REPO, Process, free_port, spawn, wait_for_port

EVERYTHING = PEERS / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
CLIENTS = REPO / "tests" / "peers" / "clients"


@dataclass
class ConformanceUpstream:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @classmethod
    def start(cls, directory: Path) -> ConformanceUpstream:
        port = free_port()
        process = spawn(
            [sys.executable, "-m", "tests.support.conformance_upstream", str(port)],
            directory / f"conformance-upstream-{port}.log",
        )
        wait_for_port(port, process)
        return cls(port, process)


def everything_stdio_command() -> list[str]:
    """The gateway's upstream command for server-everything over stdio."""
    return [str(NODE), str(EVERYTHING), "stdio"]


@dataclass
class EverythingServer:
    """server-everything's Streamable HTTP transport (stateful: sessions)."""

    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @classmethod
    def start(cls, directory: Path) -> EverythingServer:
        port = free_port()
        process = spawn(
            [str(NODE), str(EVERYTHING), "streamableHttp"],
            directory / f"server-everything-{port}.log",
            env={"PORT": str(port), "HOST": "127.0.0.1"},
        )
        wait_for_port(port, process)
        return cls(port, process)


@dataclass
class BearerProxy:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, directory: Path, target: str, token: str, *, tool_prefix: str | None = None
    ) -> BearerProxy:
        port = free_port()
        args = [sys.executable, "-m", "tests.support.bearer_proxy", str(port), target]
        if tool_prefix:
            args.append(tool_prefix)
        process = spawn(
            args,
            directory / f"bearer-proxy-{port}.log",
            env={"BEARER_PROXY_TOKEN": token},
        )
        wait_for_port(port, process)
        return cls(port, process)


class NodeClientError(AssertionError):
    """A client script failed: its stderr and what it printed are in the message."""


def run_node_client(
    script: str, args: list[str], *, env: dict[str, str] | None = None, timeout_s: float = 120
) -> list[Any]:
    """Runs tests/peers/clients/SCRIPT with ARGS; returns the JSON lines it printed."""
    done = subprocess.run(
        [str(NODE), str(CLIENTS / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise NodeClientError(
            f"{script} {args} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n"
            f"stderr:\n{done.stderr[-3000:]}"
        )
    return [json.loads(line) for line in lines]
