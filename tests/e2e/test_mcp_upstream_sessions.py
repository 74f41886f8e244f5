"""One upstream session per calling session (docs/decisions/0034), through a real
gateway process, with server-everything — which speaks 2025-11-25 only and keeps a
session's roots — behind it over Streamable HTTP (``ev``) and stdio (``evs``, a
process the gateway starts per upstream session).

A 2025-11-25 client with a session at the gateway reaches such an upstream on an
upstream session of its own: its roots are asked of it alone (under policy, audited),
two sessions never see each other's, the upstream session (and its process) goes
when the calling session ends or expires, their number is capped (an idle one makes
room), and a sessionless (2026-07-28) call reaches it on the upstream session held for its
principal, closed once idle (docs/decisions/0043).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp import Client
from sqlalchemy import Engine, create_engine

from gateway.audit import read_entries
from tests.e2e.mcp_client import connect
from tests.support.peers import EverythingServer, everything_stdio_command
from tests.support.processes import GatewayServer, upstream_grants, write_policy
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.anyio

UPSTREAMS = ("ev", "evs")  # Streamable HTTP, stdio
# A role granted server-everything's tools but none of its requests for client input.
RESTRICTED = [{"role": "restricted", "tool": "ev__*"}]


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EverythingServer]:
    server = EverythingServer.start(tmp_path_factory.mktemp("everything"))
    yield server
    server.process.stop()


def _gateway(directory: Path, upstreams: list[dict[str, Any]], **sessions: Any) -> GatewayServer:
    grants = [g for u in upstreams for g in upstream_grants(u["name"])] + RESTRICTED
    server = GatewayServer.configure(
        directory, upstreams=upstreams, policy=write_policy(directory, grants)
    )
    server.config["mcp"] = {"sessions": sessions}
    return server.start()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, everything: EverythingServer
) -> Iterator[GatewayServer]:
    server = _gateway(
        tmp_path_factory.mktemp("upstream-sessions"),
        [
            {"name": "ev", "url": everything.url, "timeout_s": 20},
            {
                "name": "evs",
                "transport": "stdio",
                "command": everything_stdio_command(),
                "timeout_s": 20,
            },
        ],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def database(gateway: GatewayServer) -> Iterator[Engine]:
    engine = create_engine(gateway.config["storage"]["url"])
    yield engine
    engine.dispose()


def _roots_of(name: str, asked: list[str]) -> Any:
    async def roots(context: Any) -> types.ListRootsResult:
        asked.append(name)
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///work/{name}", name=name)])

    return roots


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(item, "text", "") for item in result.content)


@asynccontextmanager
async def _session(
    gateway: GatewayServer, sub: str, root: str, asked: list[str], **token: Any
) -> AsyncIterator[Client]:
    async with connect(
        gateway.mcp_url,
        gateway.token(sub, **token),
        "legacy",
        list_roots_callback=_roots_of(root, asked),
    ) as client:
        yield client


def held(gateway: GatewayServer, upstream: str, held_for: str | None = None) -> float:
    """``gateway_upstream_sessions`` of ``upstream`` on the gateway's /metrics: held for
    ``held_for`` (``session`` or ``principal``), or for anyone."""
    text = httpx.get(gateway.url + "/metrics", timeout=10).text
    total = 0.0
    for labels, value in re.findall(r"^gateway_upstream_sessions\{(.*)\} (\S+)$", text, re.M):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if named["upstream"] == upstream and held_for in (None, named["held_for"]):
            total += float(value)
    return total


def stdio_children(gateway: GatewayServer) -> int:
    """server-everything processes the gateway process started (over stdio)."""
    assert gateway.process is not None
    parent = gateway.process.popen.pid
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # it ended meanwhile
        if int(fields[1]) == parent and b"server-everything" in cmdline:
            count += 1
    return count


def _entries(database: Engine, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == kind and e.payload]


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_two_sessions_each_get_their_own_roots_asked_and_audited(
    gateway: GatewayServer, database: Engine, upstream: str
) -> None:
    alice_asked: list[str] = []
    bob_asked: list[str] = []
    alice_root, bob_root = f"alice-{upstream}", f"bob-{upstream}"
    async with (
        _session(gateway, "agent:alice", alice_root, alice_asked) as alice,
        _session(gateway, "agent:bob", bob_root, bob_asked) as bob,
    ):
        for _ in range(2):  # interleaved: each session's upstream session keeps its own
            for client, mine, theirs in (
                (alice, alice_root, bob_root),
                (bob, bob_root, alice_root),
            ):
                text = _text(await client.call_tool(f"{upstream}__get-roots-list", {}))
                assert f"file:///work/{mine}" in text, text
                assert f"file:///work/{theirs}" not in text, text
    # Each client was asked, and only for its own roots.
    assert alice_asked and set(alice_asked) == {alice_root}
    assert bob_asked and set(bob_asked) == {bob_root}
    # Every question was decided and recorded before it was asked, and answered.
    decisions = [
        d
        for d in _entries(database, "relay.decision")
        if d["method"] == "roots/list" and d["upstream"] == upstream
    ]
    by_subject = {d["principal"]["sub"] for d in decisions if d["decision"]["allow"]}
    assert {"agent:alice", "agent:bob"} <= by_subject
    answers = {a["relay_id"]: a for a in _entries(database, "relay.answer")}
    assert all(
        answers[d["relay_id"]]["status"] == "answered"
        for d in decisions
        if d["relay_id"] in answers and d["principal"]["sub"] in ("agent:alice", "agent:bob")
    )


async def test_policy_refuses_roots_on_a_sessions_own_upstream_session(
    gateway: GatewayServer, database: Engine
) -> None:
    asked: list[str] = []
    async with _session(gateway, "agent:carol", "carol", asked, roles=("restricted",)) as carol:
        text = _text(await carol.call_tool("ev__get-roots-list", {}))
    assert "file:///work/carol" not in text, text
    assert asked == []  # never asked: policy grants role restricted no client input
    refused = [
        d
        for d in _entries(database, "relay.decision")
        if d["method"] == "roots/list" and d["principal"]["sub"] == "agent:carol"
    ]
    assert refused and not any(d["decision"]["allow"] for d in refused)


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_the_upstream_session_ends_with_the_calling_session(
    gateway: GatewayServer, upstream: str
) -> None:
    await eventually_async(lambda: held(gateway, upstream) == 0, "no upstream session held")
    shared = stdio_children(gateway)  # the shared connection's process (stdio upstream)
    asked: list[str] = []
    async with _session(gateway, "agent:dave", "dave", asked) as dave:
        assert not (await dave.call_tool(f"{upstream}__echo", {"message": "hi"})).is_error
        assert held(gateway, upstream, "session") == 1
        if upstream == "evs":
            assert stdio_children(gateway) == shared + 1  # a process of its own
    # The client's exit DELETEs its session: the upstream session is closed with it.
    await eventually_async(lambda: held(gateway, upstream) == 0, "the upstream session closed")
    if upstream == "evs":
        eventually(lambda: stdio_children(gateway) == shared, "its process ended")


def _logs_into(seen: list[str]) -> Any:
    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.append(params.level)

    return on_log


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_what_a_sessions_upstream_session_logs_reaches_that_session_alone(
    gateway: GatewayServer, upstream: str
) -> None:
    """server-everything logs outside any request (``toggle-simulated-logging``): on a
    session's own upstream session those messages are that session's, at the level it
    set (passed on to the upstream session too), and never another session's."""
    frank_saw: list[str] = []
    grace_saw: list[str] = []
    token = gateway.token
    async with (
        connect(
            gateway.mcp_url, token("agent:frank"), "legacy", logging_callback=_logs_into(frank_saw)
        ) as frank,
        connect(
            gateway.mcp_url, token("agent:grace"), "legacy", logging_callback=_logs_into(grace_saw)
        ) as grace,
    ):
        await grace.set_logging_level("debug")  # grace asks for every message too
        assert not (await grace.call_tool(f"{upstream}__echo", {"message": "hi"})).is_error
        await frank.set_logging_level("debug")  # before its upstream session exists
        if "Stopped" in _text(await frank.call_tool(f"{upstream}__toggle-simulated-logging", {})):
            await frank.call_tool(f"{upstream}__toggle-simulated-logging", {})
        await eventually_async(lambda: len(frank_saw) >= 2, "frank's upstream session's logs")
        await grace.list_tools()  # a round trip on grace's session after frank's messages
        assert grace_saw == []


async def test_a_sessionless_call_uses_its_principals_upstream_session(
    gateway: GatewayServer,
) -> None:
    """A 2026-07-28 request has no session: it reaches a 2025-11-25 upstream on the
    upstream session held for its principal (docs/decisions/0043), which its next
    request finds again; a REST call is no MCP client's, and uses the shared
    connection."""
    await eventually_async(lambda: held(gateway, "ev") == 0, "no upstream session held")
    async with connect(gateway.mcp_url, gateway.token("agent:erin"), "2026-07-28") as erin:
        result = await erin.call_tool("ev__echo", {"message": "sessionless"})
        assert not result.is_error and "sessionless" in _text(result)
        assert held(gateway, "ev", "principal") == 1  # erin's principal's
        assert held(gateway, "ev", "session") == 0
    async with connect(gateway.mcp_url, gateway.token("agent:erin"), "2026-07-28") as again:
        assert not (await again.call_tool("ev__echo", {"message": "again"})).is_error
    assert held(gateway, "ev") == 1  # the same principal's, kept
    async with httpx.AsyncClient(timeout=30) as http:
        rest = await http.post(
            f"{gateway.url}/v1/tools/ev__echo/call",
            json={"arguments": {"message": "rest"}},
            headers=gateway.headers(sub="agent:erin"),
        )
    assert rest.status_code == 200 and "rest" in rest.text
    assert held(gateway, "ev") == 1  # no upstream session opened for it


@pytest.fixture(scope="module")
def capped(
    tmp_path_factory: pytest.TempPathFactory, everything: EverythingServer
) -> Iterator[GatewayServer]:
    server = _gateway(
        tmp_path_factory.mktemp("capped"),
        [{"name": "ev", "url": everything.url, "timeout_s": 20}],
        max_upstream_sessions=1,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idling(
    tmp_path_factory: pytest.TempPathFactory, everything: EverythingServer
) -> Iterator[GatewayServer]:
    server = _gateway(
        tmp_path_factory.mktemp("idling"),
        [{"name": "ev", "url": everything.url, "timeout_s": 20}],
        idle_timeout_s=2,
        principal_idle_timeout_s=2,
    )
    yield server
    server.stop()


async def test_at_the_cap_an_idle_upstream_session_makes_room(capped: GatewayServer) -> None:
    """Refusing when none is idle: tests/e2e/test_mcp_upstream_session_state.py."""
    asked: list[str] = []
    async with _session(capped, "agent:frank", "frank", asked) as frank:
        assert not (await frank.call_tool("ev__echo", {"message": "first"})).is_error
        async with _session(capped, "agent:grace", "grace", asked) as grace:
            # Frank's upstream session is idle: closed to make room for grace's.
            assert not (await grace.call_tool("ev__echo", {"message": "second"})).is_error
            assert held(capped, "ev") == 1
            # And frank's next request gets a fresh one (grace's, idle, makes room).
            assert not (await frank.call_tool("ev__echo", {"message": "again"})).is_error
            assert held(capped, "ev") == 1
    await eventually_async(lambda: held(capped, "ev") == 0, "both sessions ended")


async def test_an_idle_session_loses_its_upstream_session(idling: GatewayServer) -> None:
    await eventually_async(lambda: held(idling, "ev") == 0, "no upstream session held")
    headers = {**idling.headers(sub="agent:heidi"), "Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"roots": {}},
            "clientInfo": {"name": "idle-test", "version": "1"},
        },
    }
    async with httpx.AsyncClient(timeout=30) as http:
        opened = await http.post(idling.mcp_url, json=init, headers=headers)
        session = {
            **headers,
            "Mcp-Session-Id": opened.headers["mcp-session-id"],
            "MCP-Protocol-Version": "2025-11-25",
        }
        await http.post(
            idling.mcp_url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=session,
        )
        called = await http.post(
            idling.mcp_url,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "ev__echo", "arguments": {"message": "idle"}},
            },
            headers=session,
        )
        assert "idle" in called.text
        assert held(idling, "ev") == 1
        # No DELETE: the SDK closes the session after idle_timeout_s without a request,
        # and the gateway closes its upstream session with it.
        await eventually_async(lambda: held(idling, "ev") == 0, "the idle session's closed")
        gone = await http.post(
            idling.mcp_url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=session
        )
        assert gone.status_code == 404


async def test_an_idle_principals_upstream_session_is_closed(idling: GatewayServer) -> None:
    """No session ends a principal's upstream session: it is closed once idle for
    mcp.sessions.principal_idle_timeout_s, and the next request opens another."""
    await eventually_async(lambda: held(idling, "ev") == 0, "no upstream session held")
    async with connect(idling.mcp_url, idling.token("agent:ivan"), "2026-07-28") as ivan:
        assert not (await ivan.call_tool("ev__echo", {"message": "idle"})).is_error
        assert held(idling, "ev") == 1
        await eventually_async(lambda: held(idling, "ev") == 0, "the idle one closed")
        assert not (await ivan.call_tool("ev__echo", {"message": "again"})).is_error
        assert held(idling, "ev") == 1
