"""The upstream session held for a sessionless request's principal (docs/decisions/0043):
a 2025-11-25 upstream that keeps roots per session sees each principal on an upstream
session of its own, one per set of declared capabilities; it closes once idle; and what
the upstream asks there while none of the principal's requests is in flight is
refused under the relay's rule and recorded.

The upstream is tests/support/session_upstream.py over stdio (a process per upstream
session, asking a session's roots once and again when told they changed), reached by
the real `McpUpstream`; the requests for client input go through the real `Relays`
(the embedded Rego policy and a real audit log); the clock of the idle expiry is the
test's.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from gateway.audit import AuditLog, read_entries
from gateway.config import McpStdioUpstream
from gateway.operations import CallerSession, ClientInput, InputRequest, Operation
from gateway.policy.embedded import EmbeddedEngine
from gateway.relays import Relays
from gateway.store import create_engine, migrate
from gateway.surfaces.mcp_principals import NOT_IN_FLIGHT, PrincipalCallers
from gateway.types import Principal
from gateway.upstreams.mcp_caller_sessions import SessionSlots
from gateway.upstreams.mcp_client import McpUpstream
from tests.support.clock import FakeClock
from tests.support.deciding import decider_for
from tests.support.processes import REPO, write_policy
from tests.support.session_upstream import events
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

ALICE = Principal(sub="agent:alice", iss="test", roles=("agent",))
BOB = Principal(sub="agent:bob", iss="test", roles=("agent",))
GRANTS = [{"role": "agent", "client_input": "roots/list", "upstream": "up"}]
ROOTS = types.ClientCapabilities(roots=types.RootsCapability())
IDLE_S = 60.0


class _Client:
    """A calling client as the relay reaches it: answers roots/list with its own."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.asked = 0

    def declared(self, request: InputRequest) -> bool:
        return request.method == "roots/list"

    def capabilities(self) -> dict[str, Any]:
        return {"roots": {}}

    def unreachable(self) -> str | None:
        return None

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        self.asked += 1
        return {key: {"roots": [{"uri": f"file:///{self.root}"}]} for key in requests}


class _Lab:
    def __init__(self, upstream: McpUpstream, relays: Relays, slots: SessionSlots) -> None:
        self.upstream = upstream
        self.relays = relays
        self.slots = slots
        self.principals = PrincipalCallers(relays)
        self.calls = 0

    def caller(self, principal: Principal, capabilities: Any = ROOTS) -> CallerSession:
        self.calls += 1
        return self.principals.caller(
            principal,
            "/mcp",
            capabilities,
            method="tools/call",
            target="up__roots",
            request_id=f"req_{self.calls}",
        )

    async def call(
        self, principal: Principal, tool: str, client: _Client, capabilities: Any = ROOTS
    ) -> str:
        session = self.caller(principal, capabilities)
        operation = Operation(
            principal=principal,
            method="tools/call",
            target=f"up__{tool}",
            arguments={},
            transport="mcp",
            request_id=f"req_{self.calls}",
        )
        client_input: ClientInput | None = self.relays.with_channel(operation, client).client_input
        result = await self.upstream.call_tool(
            tool,
            {},
            idempotency_key=None,
            headers={},
            progress=None,
            log=None,
            timeout_s=30,
            client_input=client_input,
            session=session,
        )
        assert not result.is_error, result
        return " ".join(str(item.get("text", "")) for item in result.content)


@asynccontextmanager
async def _lab(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[_Lab, Any]]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = AuditLog(database, "test/audit")
    await audit.start()
    relays = Relays(decider_for(EmbeddedEngine(write_policy(tmp_path, GRANTS)), 5), audit)
    config = McpStdioUpstream(
        name="up",
        transport="stdio",
        command=[sys.executable, "-m", "tests.support.session_upstream", "up", str(_log(tmp_path))],
        env={"PYTHONPATH": str(REPO)},
        timeout_s=30,
    )
    slots = SessionSlots(10, principal_idle_s=IDLE_S, clock=clock)
    upstream = McpUpstream(config, static_headers={}, connect_timeout_s=30, slots=slots)

    async def reconnected(name: str) -> None:
        pass

    try:
        async with anyio.create_task_group() as tasks:
            await upstream.start(tasks, reconnected)
            try:
                yield _Lab(upstream, relays, slots), database
            finally:
                await upstream.close()
    finally:
        await audit.close()
        database.dispose()


def _log(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


def _decisions(database: Any) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == "relay.decision" and e.payload]


async def test_two_principals_never_see_each_others_roots(tmp_path: Path) -> None:
    async with _lab(tmp_path, FakeClock()) as (lab, database):
        alice, bob = _Client("alice"), _Client("bob")
        assert await lab.call(ALICE, "roots", alice) == "file:///alice"
        assert await lab.call(BOB, "roots", bob) == "file:///bob"
        # The upstream kept each one's for its session: alice is not asked again, and
        # never sees bob's.
        assert await lab.call(ALICE, "roots", alice) == "file:///alice"
        assert (alice.asked, bob.asked) == (1, 1)
        assert len(lab.upstream.connection.callers) == 2 and lab.slots.held == 2
        decided = _decisions(database)
        assert [d["principal"]["sub"] for d in decided] == ["agent:alice", "agent:bob"]
        assert all(d["decision"]["allow"] and d["method"] == "roots/list" for d in decided)


async def test_other_declared_capabilities_are_another_upstream_session(tmp_path: Path) -> None:
    async with _lab(tmp_path, FakeClock()) as (lab, _database):
        client = _Client("alice")
        with_roots = await lab.call(ALICE, "pid", client)
        without = await lab.call(ALICE, "pid", client, capabilities=None)
        assert with_roots != without  # two upstream processes: two upstream sessions
        assert await lab.call(ALICE, "pid", client) == with_roots  # and each is kept
        assert lab.caller(ALICE).id != lab.caller(ALICE, None).id
        assert lab.caller(ALICE).id != lab.caller(BOB).id
        assert len(lab.upstream.connection.callers) == 2


async def test_an_idle_upstream_session_of_a_principal_is_closed(tmp_path: Path) -> None:
    clock = FakeClock()
    async with _lab(tmp_path, clock) as (lab, _database):
        client = _Client("alice")
        first = await lab.call(ALICE, "pid", client)
        callers = lab.upstream.connection.callers
        key = lab.caller(ALICE).id
        own = callers.existing(key)
        assert own is not None
        assert callers.expire_idle() == pytest.approx(IDLE_S)  # due in IDLE_S from now
        clock.advance(IDLE_S - 1)
        assert callers.expire_idle() == pytest.approx(1) and callers.existing(key) is own
        # A request in flight keeps it however long it takes.
        flight = own.in_flight.enter(None)
        clock.advance(IDLE_S * 2)
        assert callers.expire_idle() is None and callers.existing(key) is own
        own.in_flight.leave(flight)  # idle again from now
        clock.advance(IDLE_S)
        assert callers.expire_idle() is None and callers.existing(key) is None
        await eventually_async(lambda: lab.slots.held == 0, "its slot given back")
        await eventually_async(lambda: callers.closed == 1, "its process ended")
        # The principal's next request opens another: the upstream's state is new.
        assert await lab.call(ALICE, "pid", client) != first
        assert callers.opened == 2


async def test_what_the_upstream_asks_with_no_request_in_flight_is_refused_and_recorded(
    tmp_path: Path,
) -> None:
    async with _lab(tmp_path, FakeClock()) as (lab, database):
        alice = _Client("alice")
        assert await lab.call(ALICE, "roots", alice) == "file:///alice"
        own = lab.upstream.connection.callers.existing(lab.caller(ALICE).id)
        assert own is not None and own.client is not None and not own.in_flight.busy
        # Told the roots changed, the upstream asks for them again, outside any request.
        await own.client.session.send_notification(types.RootsListChangedNotification())
        await eventually_async(lambda: len(_decisions(database)) == 2, "the refusal recorded")
        refused = _decisions(database)[1]
        assert not refused["decision"]["allow"] and refused["decision"]["engine"] == "gateway"
        assert NOT_IN_FLIGHT in " ".join(refused["decision"]["reasons"])
        assert refused["principal"]["sub"] == "agent:alice" and refused["method"] == "roots/list"
        # Attributed to the principal's latest request there.
        assert refused["request_id"] == "req_1"
        assert alice.asked == 1  # never asked
        assert not [e for e in events(_log(tmp_path)) if e["event"] == "roots_changed"]
