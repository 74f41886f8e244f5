"""A gateway in front of real upstreams: one MCP server over HTTP, one over stdio, and
an HTTP API, shared by the tests of a module (starting processes costs seconds); and
the offerings gateway: one upstream with resources and prompts, and grants for some."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.store import create_engine
from tests.support.opa import OpaServer
from tests.support.peers import ConformanceUpstream
from tests.support.processes import (
    GatewayServer,
    McpUpstreamServer,
    stdio_upstream_command,
    write_policy,
)

GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__whoami"},
    {"role": "agent", "tool": "up__slow"},
    {"role": "agent", "tool": "up__fail"},
    {"role": "agent", "tool": "up__with_meta"},
    {"role": "agent", "tool": "up__login"},
    # up__write: no grant at all, so every call to it must be refused.
    {
        "role": "agent",
        "tool": "local__echo",
        "constraints": [{"kind": "max_length", "argument": "text", "max": 20}],
    },
    {"role": "agent", "tool": "local__write"},
    {"role": "agent", "tool": "api__*"},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture
def database(gateway: GatewayServer) -> Iterator[Engine]:
    """The database of the module's ``gateway``, read as an auditor would."""
    engine = create_engine(gateway.config["storage"]["url"])
    yield engine
    engine.dispose()


@contextmanager
def conformance_gateway(
    workdir: Path, grants: list[dict[str, Any]], *, sidecar: bool = False
) -> Iterator[GatewayServer]:
    """A gateway in front of our conformance upstream (tests/support/conformance_upstream.py,
    named ``conf``), which asks for client input and serves subscriptions, with ``grants``;
    with ``sidecar``, decided by an OPA server on those files (no bundle: no revision),
    whose address is the gateway's ``config["policy"]["url"]``."""
    upstream = ConformanceUpstream.start(workdir)
    policy = write_policy(workdir / "policy-data", grants)
    opa = OpaServer([policy], workdir / "opa.log").start() if sidecar else None
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": "conf", "url": upstream.url, "timeout_s": 20}],
        policy=None if opa else policy,
        policy_config=(
            {"engine": "opa", "url": opa.url, "timeout_ms": 2000, "path": str(policy)}
            if opa
            else None
        ),
    ).start()
    try:
        yield server
    finally:
        server.stop()
        upstream.process.stop()
        if opa:
            opa.stop()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[McpUpstreamServer]:
    """A test upstream (tests/support/upstream_mcp) of the test's own; a module that
    means something else by `upstream` defines its own."""
    server = McpUpstreamServer.start(tmp_path)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def mcp_upstream(workdir: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def stdio_call_log(workdir: Path) -> Path:
    return workdir / "stdio.calls.jsonl"


@pytest.fixture(scope="module")
def gateway(
    workdir: Path, mcp_upstream: McpUpstreamServer, stdio_call_log: Path
) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[
            {
                "name": "up",
                "url": mcp_upstream.url,
                "timeout_s": 2,
                "credentials": {"mode": "jwt", "audience": "http://up.test"},
            },
            {
                "name": "local",
                "transport": "stdio",
                "command": stdio_upstream_command(stdio_call_log),
            },
        ],
        policy=write_policy(workdir, GRANTS),
    )
    server.start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The doc test's snippets that cannot run here, with their reasons, whenever it
    ran: a skipped example is visible in every run, never silent."""
    from tests.support.doc_snippets import NOT_RUN

    if not NOT_RUN:
        return
    terminalreporter.section(f"doc test: {len(NOT_RUN)} snippets not run here")
    for block in NOT_RUN:
        terminalreporter.write_line(f"{block.where}: {block.reason}")


# Grants of the offerings gateway: tools, some resources, some prompts of upstream "up".
OFFERING_GRANTS = [
    {"role": "agent", "tool": "up__*"},
    {"role": "agent", "resource": "gateway:up/test://static"},
    {"role": "agent", "resource": "gateway:up/test://changing"},
    {"role": "agent", "resource": "gateway:up/test://items/*"},
    {"role": "agent", "prompt": "up__greet"},
    {"role": "agent", "prompt": "up__plan"},
]


@pytest.fixture(scope="module")
def offerings_upstream(workdir: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


def offerings_gateway_with(
    directory: Path, upstream: McpUpstreamServer, **config: Any
) -> GatewayServer:
    """A gateway in front of ``upstream`` with the offerings grants; ``config``: more
    top-level keys of its config (e.g. ``mcp``). Not started."""
    server = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 5}],
        policy=write_policy(directory / "policy-data", OFFERING_GRANTS),
    )
    server.config.update(config)
    return server


@pytest.fixture(scope="module")
def offerings_gateway(
    workdir: Path, offerings_upstream: McpUpstreamServer
) -> Iterator[GatewayServer]:
    server = offerings_gateway_with(workdir / "offerings-gateway", offerings_upstream).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def offerings_database(offerings_gateway: GatewayServer) -> Iterator[Engine]:
    engine = create_engine(offerings_gateway.config["storage"]["url"])
    yield engine
    engine.dispose()
