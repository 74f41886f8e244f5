"""What the comparison calls: one upstream, and the paths to it.

Every target reaches the *same* upstream process (the recording test server over
Streamable HTTP, stateless, on loopback):

- ``direct``: the upstream itself;
- ``bare_proxy``: `bench.bare_proxy`, the extra hop and nothing else;
- ``gateway``: `gateway serve` with the embedded engine (regopy), durable SQLite audit;
- ``gateway_opa``: the same with the OPA sidecar (its CPU counts as the middle too);
- ``contextforge``: IBM ContextForge 1.1.0 (bench/contextforge.py).

Both gateways run the test configuration of tests/support/processes.py with the
shipped policy and its defaults (the policy timeout included): a call the policy
engine cannot decide in time is denied, and the load runs count it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import contextforge
from tests.support.opa import OpaServer
from tests.support.processes import (
    GatewayServer,
    McpUpstreamServer,
    Process,
    free_port,
    spawn,
    wait_for_port,
    write_policy,
)

ALL = ("direct", "bare_proxy", "gateway", "gateway_opa", "contextforge")
GRANTS = [
    {"role": "agent", "tool": "up__*"},
    {"role": "agent", "resource": "gateway:up/test://static"},
    {"role": "agent", "prompt": "up__greet"},
]
# Tokens outlive the longest run: an expired token turns every later call into a 401
# (the tests' default of 10 minutes is shorter than `make bench`).
TOKEN_TTL_S = 6 * 3600


@dataclass
class Target:
    name: str
    url: str
    token: str
    # An upstream tool or prompt name, or resource URI → this target's.
    rename: Callable[[str], str]
    # Process trees whose CPU is "the middle" (empty for the direct call).
    middle: dict[str, int] = field(default_factory=dict)
    # The MCP methods this target is measured on (None: every one). ContextForge's
    # virtual server bundles the upstream's tools only (bench/contextforge.py).
    methods: frozenset[str] | None = None

    def serves(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass
class Lab:
    """The running processes; `targets` in the order given."""

    upstream: McpUpstreamServer
    targets: list[Target]

    @property
    def upstream_pid(self) -> int:
        return self.upstream.process.popen.pid


def start_proxy(
    directory: Path, upstream_url: str, commit_to: Path | None = None
) -> tuple[Process, str]:
    """bench/bare_proxy.py; with ``commit_to``, committing each body there first."""
    port = free_port()
    durable = ["--commit-to", str(commit_to)] if commit_to is not None else []
    command = [sys.executable, "-m", "bench.bare_proxy", "--port", str(port)]
    process = spawn(
        [*command, "--upstream", upstream_url, *durable],
        directory / f"bare-proxy-{port}.log",
    )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}/mcp"


def gateway_rename(name: str) -> str:
    """The gateway's name of an upstream tool or prompt, or its URI of a resource."""
    return f"gateway:up/{name}" if "://" in name else f"up__{name}"


@contextlib.contextmanager
def lab(directory: Path, names: tuple[str, ...] = ALL) -> Iterator[Lab]:
    """Starts the upstream and the named targets; stops everything on exit."""
    unknown = set(names) - set(ALL)
    if unknown:
        raise ValueError(f"unknown targets {sorted(unknown)}; known: {ALL}")
    with contextlib.ExitStack() as stack:
        upstream = McpUpstreamServer.start(directory)
        stack.callback(upstream.process.stop)
        policy = write_policy(directory, GRANTS)
        gateway_token = ""
        targets: list[Target] = []
        for name in names:
            if name == "direct":
                targets.append(Target(name, upstream.url, "", lambda n: n))
            elif name == "bare_proxy":
                proxy, url = start_proxy(directory, upstream.url)
                stack.callback(proxy.stop)
                targets.append(Target(name, url, "", lambda n: n, {name: proxy.popen.pid}))
            elif name in ("gateway", "gateway_opa"):
                middle: dict[str, int] = {}
                section: dict[str, object] = {"path": str(policy)}
                if name == "gateway_opa":
                    opa = OpaServer([policy], directory / "opa.log").start()
                    stack.callback(opa.stop)
                    assert opa.process is not None
                    middle["opa"] = opa.process.popen.pid
                    section = {"engine": "opa", "url": opa.url, "path": str(policy)}
                gateway = GatewayServer.configure(
                    directory / name,
                    upstreams=[{"name": "up", "url": upstream.url}],
                    policy_config=section,
                ).start()
                stack.callback(gateway.stop)
                assert gateway.process is not None
                middle = {name: gateway.process.popen.pid, **middle}
                token = gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S)
                gateway_token = gateway_token or token
                targets.append(Target(name, gateway.mcp_url, token, gateway_rename, middle))
            else:
                peer = contextforge.ContextForge.start(directory / "contextforge", upstream.url)
                stack.callback(peer.stop)
                targets.append(
                    Target(
                        name,
                        peer.mcp_url,
                        peer.token,
                        contextforge.rename,
                        {name: peer.pid},
                        methods=frozenset({"tools/call", "tools/list"}),
                    )
                )
        # The direct and bare paths carry a token too, so that every request has the
        # same size; the upstream does not check it.
        for target in targets:
            target.token = target.token or gateway_token or "bench"
        yield Lab(upstream, targets)
