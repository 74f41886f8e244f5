"""What a calling session sets up reaches its own upstream sessions, and survives losing
one (docs/decisions/0034, "Amended"), through a real gateway process.

Behind it two stdio upstreams of ours (tests/support/session_upstream.py), each
upstream session a process that records what it was told: its roots (asked once per
session, and again when told they changed), its log level, its subscriptions. A
2025-11-25 client of the SDK with a session at the gateway:

- changes its roots and says so: its own upstream session asks again, another
  session's does not hear of it;
- sets its log level: decided by policy and audited like every method, then passed to
  both of its upstream sessions at once (each answers only once the other was asked);
  a level the policy refuses changes nothing and is audited;
- finds its idle upstream session closed to make room at the process's cap (the least
  recently used idle one of any session), and a fresh one opened at its next request;
  a request is refused only when no upstream session is idle;
- keeps its subscription when its upstream session's process is killed: the next one
  is subscribed again, and updates arrive.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import Engine

from gateway.audit import read_entries
from tests.e2e.mcp_client import connect
from tests.e2e.test_mcp_upstream_sessions import held
from tests.support.processes import GatewayServer, upstream_grants, write_policy
from tests.support.session_upstream import DOC, events
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CAP = 2


def _upstream(name: str, log: Path, meets: str) -> dict[str, Any]:
    return {
        "name": name,
        "transport": "stdio",
        "command": [sys.executable, "-m", "tests.support.session_upstream", name, str(log)],
        "cwd": str(ROOT),
        "env": {"MEET_ON_SET_LEVEL": meets},
        "timeout_s": 60,
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("session-state")
    log = directory / "events.jsonl"
    grants = upstream_grants("sa") + upstream_grants("sb")
    server = GatewayServer.configure(
        directory,
        upstreams=[_upstream("sa", log, "sb"), _upstream("sb", log, "sa")],
        # A session may not ask for debug messages.
        policy=write_policy(directory, grants, min_log_level="info"),
    )
    server.config["mcp"] = {"sessions": {"max_upstream_sessions": CAP}}
    server.start()
    yield server
    server.stop()


def _log(gateway: GatewayServer) -> list[dict[str, Any]]:
    return events(gateway.directory / "events.jsonl")


@pytest.fixture(autouse=True)
async def _none_held(gateway: GatewayServer) -> None:
    """Each test starts with every upstream session of the earlier ones closed."""
    for name in ("sa", "sb"):
        await eventually_async(
            lambda n=name: held(gateway, n) == 0,  # type: ignore[misc]
            f"no session held on {name}",
        )


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(item, "text", "") for item in result.content)


class _Roots:
    """A client's roots, which it may change."""

    def __init__(self, root: str) -> None:
        self.root = root

    async def __call__(self, context: Any) -> types.ListRootsResult:
        uri = f"file:///work/{self.root}"
        return types.ListRootsResult(roots=[types.Root(uri=uri, name=self.root)])


@asynccontextmanager
async def _session(gateway: GatewayServer, sub: str, **options: Any) -> AsyncIterator[Client]:
    async with connect(gateway.mcp_url, gateway.token(sub), "legacy", **options) as client:
        yield client


async def _pid(client: Client, upstream: str) -> int:
    return int(_text(await client.call_tool(f"{upstream}__pid", {})))


async def test_a_roots_change_reaches_that_sessions_upstream_session_alone(
    gateway: GatewayServer, database: Engine
) -> None:
    alice_roots, bob_roots = _Roots("alice"), _Roots("bob")
    async with (
        _session(gateway, "agent:alice", list_roots_callback=alice_roots) as alice,
        _session(gateway, "agent:bob", list_roots_callback=bob_roots) as bob,
    ):
        assert _text(await alice.call_tool("sa__roots", {})) == "file:///work/alice"
        assert _text(await bob.call_tool("sa__roots", {})) == "file:///work/bob"
        alice_pid, bob_pid = await _pid(alice, "sa"), await _pid(bob, "sa")
        assert alice_pid != bob_pid  # an upstream session (a process) each

        alice_roots.root = "alice-2"
        await alice.session.send_notification(types.RootsListChangedNotification())

        def asked_again() -> list[dict[str, Any]]:
            return [e for e in _log(gateway) if e["event"] == "roots_changed"]

        await eventually_async(lambda: bool(asked_again()), "alice's upstream session asked again")
        assert [(e["pid"], e["roots"]) for e in asked_again()] == [
            (alice_pid, ["file:///work/alice-2"])
        ]
        # The upstream keeps the new roots for alice; bob's never heard of the change.
        assert _text(await alice.call_tool("sa__roots", {})) == "file:///work/alice-2"
        assert _text(await bob.call_tool("sa__roots", {})) == "file:///work/bob"
    # Asked outside any request the second time, on alice's own stream: still decided
    # by policy and recorded before alice was asked.
    decided = [
        d
        for d in _entries(database, "relay.decision")
        if d["method"] == "roots/list" and d["principal"]["sub"] == "agent:alice"
    ]
    assert len(decided) == 2 and all(d["decision"]["allow"] for d in decided), decided


def _entries(database: Engine, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == kind and e.payload]


def _set_level_trail(database: Engine, sub: str) -> list[tuple[str, dict[str, Any]]]:
    """(level, decision) of each audited logging/setLevel of ``sub``."""
    attempts = {
        a["request_id"]: a
        for a in _entries(database, "call.attempt")
        if a["method"] == "logging/setLevel" and a["principal"]["sub"] == sub
    }
    return [
        (attempts[d["request_id"]]["arguments"]["level"], d["decision"])
        for d in _entries(database, "call.decision")
        if d["request_id"] in attempts
    ]


async def test_set_level_is_decided_audited_and_reaches_both_upstream_sessions_at_once(
    gateway: GatewayServer, database: Engine
) -> None:
    async with _session(gateway, "agent:carol") as carol:
        pids = {name: await _pid(carol, name) for name in ("sa", "sb")}
        await carol.set_logging_level("warning")
        told = [e for e in _log(gateway) if e["pid"] in pids.values()]
        # Each upstream session received the level, and answered only because the
        # other was asked while it waited: they were asked concurrently.
        assert {(e["upstream"], e["event"], e["level"]) for e in told} == {
            ("sa", "set_level", "warning"),
            ("sb", "set_level", "warning"),
            ("sa", "met", "warning"),
            ("sb", "met", "warning"),
        }

        with pytest.raises(MCPError) as refused:
            await carol.set_logging_level("debug")  # below the policy's min_log_level
        assert "lowest a session may ask for is info" in refused.value.error.message
        after = [e for e in _log(gateway) if e["pid"] in pids.values()]
        assert after == told  # no upstream session was told anything
    trail = _set_level_trail(database, "agent:carol")
    assert [(level, d["allow"], d["rule"]) for level, d in trail] == [
        ("warning", True, "log_level"),
        ("debug", False, "log_level_too_low"),
    ], trail


async def test_the_least_recently_used_idle_upstream_session_makes_room(
    gateway: GatewayServer,
) -> None:
    async with (
        _session(gateway, "agent:dave") as dave,
        _session(gateway, "agent:erin") as erin,
        _session(gateway, "agent:frank") as frank,
    ):
        dave_pid = await _pid(dave, "sa")
        erin_pid = await _pid(erin, "sa")  # the cap: both held, both idle
        # Frank needs one: dave's, used least recently, is closed for it.
        frank_pid = await _pid(frank, "sa")
        assert held(gateway, "sa") == CAP
        # Dave's next request opens a fresh one (its upstream state is lost), making
        # room by closing erin's, now the least recently used.
        dave_again = await _pid(dave, "sa")
        assert dave_again not in (dave_pid, erin_pid, frank_pid)
        assert await _pid(frank, "sa") == frank_pid  # frank's was used since: kept
        assert await _pid(erin, "sa") not in (erin_pid, dave_pid, dave_again, frank_pid)


async def test_refused_only_when_no_upstream_session_is_idle(gateway: GatewayServer) -> None:
    uri = f"gateway:sa/{DOC}"
    async with (
        _session(gateway, "agent:grace") as grace,
        _session(gateway, "agent:heidi") as heidi,
        _session(gateway, "agent:ivan") as ivan,
    ):
        # A subscription lives on the upstream session: neither is idle.
        await grace.subscribe_resource(uri)
        await heidi.subscribe_resource(uri)
        refused = await ivan.call_tool("sa__echo", {})
        assert refused.is_error
        decision = (refused.meta or {})["io.agentgateway/decision"]
        assert decision["error"]["code"] == "upstream_sessions_exhausted"
        await heidi.unsubscribe_resource(uri)  # heidi's is idle again: it makes room
        assert not (await ivan.call_tool("sa__echo", {})).is_error


async def test_a_subscription_survives_its_upstream_sessions_death(
    gateway: GatewayServer,
) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    uri = f"gateway:sa/{DOC}"
    async with _session(gateway, "agent:judy", message_handler=on_message) as judy:
        await judy.subscribe_resource(uri)
        assert _text(await judy.call_tool("sa__touch", {})) == "touched"
        await eventually_async(lambda: updates == [uri], "the first update")
        first = await _pid(judy, "sa")
        os.kill(first, signal.SIGKILL)

        # The next requests find it gone; one opens another upstream session, which is
        # subscribed again before it serves them (at most a request fails meanwhile).
        async def touched() -> bool:
            result = await judy.call_tool("sa__touch", {})
            return not result.is_error and _text(result) == "touched"

        for _ in range(3):
            if await touched():
                break
        else:
            raise AssertionError("no new upstream session served judy")
        await eventually_async(lambda: updates == [uri, uri], "an update after the death")
        second = await _pid(judy, "sa")
    assert second != first
    subscribed = [e["pid"] for e in _log(gateway) if e["event"] == "subscribed"]
    assert first in subscribed and second in subscribed
