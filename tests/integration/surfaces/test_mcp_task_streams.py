"""`TaskStreams`: what a 2025-11-25 upstream's task sends on the ``tasks/result`` the
gateway holds for a 2026-07-28 owner, decided by the real Rego policy (embedded
engine) and recorded in a real audit log by the one relay before it waits to be shown;
answered by the owner, timed out, or ended with the stream; bounded, and forgotten once
ended (docs/decisions/0044).

The upstream is played by the ``fetch`` each stream runs: it asks what the upstream
would send on its stream, through the `ClientInput` the gateway gives it (as the SDK's
callbacks do), and ends when the test says. Time is a `FakeClock` the test moves, and
what is due is acted on by `TaskStreams.expire`: nothing here waits for time to pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from gateway.audit import AuditLog, read_entries
from gateway.errors import ClientInputRefused
from gateway.metrics import REGISTRY
from gateway.operations import ClientInput, InputRequest, Operation
from gateway.policy.embedded import EmbeddedEngine
from gateway.relays import Relays
from gateway.store import create_engine, migrate
from gateway.surfaces.mcp_task_input import PolledChannel
from gateway.surfaces.mcp_task_streams import NoRoom, TaskStreams
from gateway.types import Principal
from tests.support.clock import FakeClock
from tests.support.deciding import decider_for
from tests.support.processes import write_policy

pytestmark = pytest.mark.anyio

AGENT = Principal(sub="agent:x", iss="test", roles=("agent",))
GRANTS = [{"role": "agent", "client_input": "elicitation/create"}]
TIMEOUT_S = 30.0
BOUND_S = 30.0  # a bound on event waits, never reached when the code works
FORM = InputRequest(
    "elicitation/create",
    {
        "mode": "form",
        "message": "Go?",
        "requestedSchema": {"type": "object", "properties": {}},
        "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "up-secret"}},
    },
)
SAMPLE = InputRequest("sampling/createMessage", {"messages": [], "maxTokens": 5})
DECLARED = types.ClientCapabilities.model_validate(
    {"elicitation": {"form": {}}, "sampling": {}}, by_name=False
)


@dataclass
class Upstream:
    """The upstream's side of one held ``tasks/result``: the requests it sends on the
    stream (each as the SDK's callback would relay it), what came back for each, and
    when its task ends (``finish``)."""

    asks: list[InputRequest] = field(default_factory=list)
    answers: list[dict[str, Any] | ClientInputRefused] = field(default_factory=list)
    finish: anyio.Event = field(default_factory=anyio.Event)
    answered: anyio.Event = field(default_factory=anyio.Event)  # set at the first answer
    fetched: int = 0
    cancelled: bool = False

    async def fetch(self, client_input: ClientInput) -> object:
        self.fetched += 1
        try:
            for request in self.asks:
                try:
                    answered = await client_input.ask("old", {"0": request})
                except ClientInputRefused as refused:  # its error, in place of an answer
                    self.answers.append(refused)
                else:
                    self.answers.append(answered["0"])
                self.answered.set()
            await self.finish.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return None


@dataclass
class Setup:
    streams: TaskStreams
    clock: FakeClock
    audit: AuditLog
    database: Any

    async def recorded(self, kind: str) -> list[dict[str, Any]]:
        """The payloads of ``kind``, once the audit log wrote what was queued."""
        await self.audit.close()
        entries = read_entries(self.database)
        return [e.payload for e in entries if e.kind == kind and e.payload]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = AuditLog(database, "test/audit")
    await audit.start()
    policy = EmbeddedEngine(write_policy(tmp_path, GRANTS))
    clock = FakeClock()
    streams = TaskStreams(
        Relays(decider_for(policy, 5), audit), timeout_s=TIMEOUT_S, clock=clock, max_streams=2
    )
    yield Setup(streams, clock, audit, database)
    await audit.close()
    database.dispose()


def _call() -> Operation:
    return Operation(AGENT, "tools/call", "old__ask", {}, "mcp", "req_task")


def _held(task_id: str, streams: TaskStreams, upstream: Upstream) -> Any:
    return streams.start(task_id, _call(), PolledChannel(DECLARED), upstream.fetch, upstream="old")


async def _ended(stream: Any) -> None:
    with anyio.fail_after(BOUND_S):
        await stream.task


def _kinds(database: Any, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == kind and e.payload]


def _gauge() -> float:
    return REGISTRY.get_sample_value("gateway_task_input_streams") or 0.0


async def test_a_request_is_decided_shown_under_the_gateways_key_and_answered(
    setup: Setup,
) -> None:
    streams, database = setup.streams, setup.database
    before = _gauge()
    upstream = Upstream(asks=[FORM])
    stream = _held("tsk_1", streams, upstream)
    assert _gauge() == before + 1
    shown = await streams.shown("tsk_1", within=BOUND_S)
    [(key, request)] = shown.items()
    assert key.startswith("in_") and request["method"] == "elicitation/create"
    assert request["params"]["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": "tsk_1"}
    assert "up-secret" not in str(shown)
    decisions = _kinds(database, "relay.decision")  # durable before it was shown
    assert [(d["request_id"], d["decision"]["allow"]) for d in decisions] == [("req_task", True)]

    # Keys of nothing shown are refused; so is an answer that is no result of its method,
    # which leaves the request waiting for a valid one.
    with pytest.raises(ClientInputRefused) as unknown:
        streams.answer("tsk_1", {"in_other": {"action": "accept"}})
    assert unknown.value.rpc_code == types.INVALID_PARAMS
    with pytest.raises(ClientInputRefused):
        streams.answer("tsk_1", {key: "yes"})
    with pytest.raises(ClientInputRefused):
        streams.answer("tsk_1", {key: {"action": "maybe"}})
    assert await streams.shown("tsk_1", within=0) == shown

    streams.answer("tsk_1", {key: {"action": "accept", "content": {"note": "go"}}})
    upstream.finish.set()
    await _ended(stream)
    assert upstream.answers == [{"action": "accept", "content": {"note": "go"}}]
    assert not streams.holds("tsk_1") and _gauge() == before
    assert stream.ended == "its tasks/result answered: the task ended"
    [answered] = await setup.recorded("relay.answer")
    assert (answered["status"], answered["action"]) == ("answered", "accept")
    assert answered["relay_id"] == decisions[0]["relay_id"]


async def test_a_refused_request_is_never_shown_and_answers_the_upstream_with_the_error(
    setup: Setup,
) -> None:
    streams, database = setup.streams, setup.database
    upstream = Upstream(asks=[SAMPLE, FORM])  # no grant lets agent be asked sampling
    stream = _held("tsk_1", streams, upstream)
    shown = await streams.shown("tsk_1", within=BOUND_S)
    assert [r["method"] for r in shown.values()] == ["elicitation/create"]
    [refused] = upstream.answers
    assert isinstance(refused, ClientInputRefused) and "no grant" in refused.message
    decisions = _kinds(database, "relay.decision")
    assert [(d["method"], d["decision"]["allow"]) for d in decisions] == [
        ("sampling/createMessage", False),
        ("elicitation/create", True),
    ]
    streams.stop("tsk_1", "the task was cancelled")
    await _ended(stream)


async def test_a_request_unanswered_for_the_timeout_is_answered_with_an_error(
    setup: Setup,
) -> None:
    streams, clock = setup.streams, setup.clock
    upstream = Upstream(asks=[FORM])
    stream = _held("tsk_1", streams, upstream)
    [key] = await streams.shown("tsk_1", within=BOUND_S)
    clock.advance(TIMEOUT_S - 1)
    streams.expire()
    assert list(await streams.shown("tsk_1", within=0)) == [key]  # it waits on
    clock.advance(1)
    streams.expire()
    with anyio.fail_after(BOUND_S):
        await upstream.answered.wait()
    [timed_out] = upstream.answers
    assert isinstance(timed_out, ClientInputRefused)
    assert "did not answer the upstream's elicitation/create within 30 s" in timed_out.message
    assert await streams.shown("tsk_1", within=0) == {}  # never shown again
    with pytest.raises(ClientInputRefused):
        streams.answer("tsk_1", {key: {"action": "accept", "content": {}}})
    upstream.finish.set()
    await _ended(stream)
    [answered] = await setup.recorded("relay.answer")
    assert answered["status"] == "error" and "within 30 s" in answered["error"]["message"]


async def test_a_stream_with_nothing_asked_for_the_timeout_is_ended(
    setup: Setup,
) -> None:
    streams, clock = setup.streams, setup.clock
    upstream = Upstream()  # asks nothing, never ends by itself
    stream = _held("tsk_1", streams, upstream)
    clock.advance(TIMEOUT_S - 1)
    streams.expire()
    assert streams.holds("tsk_1")
    clock.advance(1)
    streams.expire()
    await _ended(stream)
    assert upstream.cancelled  # its tasks/result was given up
    assert not streams.holds("tsk_1")
    assert stream.ended == "nothing was asked on it for 30 s"


async def test_one_stream_a_task_a_bounded_number_and_a_stop_answers_what_waits(
    setup: Setup,
) -> None:
    streams = setup.streams
    first = Upstream(asks=[FORM])
    stream = _held("tsk_1", streams, first)
    again = Upstream()
    assert (
        streams.start("tsk_1", _call(), PolledChannel(DECLARED), again.fetch, upstream="old")
        is stream
    )
    other = _held("tsk_2", streams, Upstream())
    with pytest.raises(NoRoom, match="2 tasks already"):
        _held("tsk_3", streams, Upstream())
    assert len(streams) == 2
    await streams.shown("tsk_1", within=BOUND_S)

    streams.stop("tsk_1", "the task was cancelled")
    streams.stop("tsk_2", "the task was cancelled")
    await _ended(stream)
    await _ended(other)
    assert again.fetched == 0 and first.fetched == 1
    [refused] = first.answers
    assert isinstance(refused, ClientInputRefused) and "the task was cancelled" in refused.message
    assert len(streams) == 0
    with pytest.raises(ClientInputRefused):
        streams.answer("tsk_1", {})
    [answered] = await setup.recorded("relay.answer")
    assert answered["status"] == "error"


async def test_an_upstream_and_an_owner_hold_a_bounded_share_of_the_streams(
    setup: Setup,
) -> None:
    """Each stream holds one of its upstream connection's HTTP connections: one
    upstream gets a bounded number, and one owner a bounded share of those."""
    streams = TaskStreams(
        setup.streams.relays,
        timeout_s=TIMEOUT_S,
        clock=setup.clock,
        max_per_upstream=3,
        max_per_owner=2,
    )
    other = Principal(sub="agent:y", iss="test", roles=("agent",))

    def start(task_id: str, principal: Principal, upstream: str) -> Any:
        call = Operation(principal, "tools/call", f"{upstream}__ask", {}, "mcp", "req_" + task_id)
        return streams.start(
            task_id, call, PolledChannel(DECLARED), Upstream().fetch, upstream=upstream
        )

    held = [start("t1", AGENT, "old"), start("t2", AGENT, "old")]
    with pytest.raises(NoRoom, match="2 of this caller's tasks"):
        start("t3", AGENT, "old")
    # The same person under another spelling of its subject is the same owner.
    spelled = Principal(sub="AGENT:x", iss="test", roles=("agent",))
    with pytest.raises(NoRoom, match="of this caller's tasks"):
        start("t3", spelled, "old")
    held.append(start("t4", other, "old"))
    with pytest.raises(NoRoom, match="3 tasks at upstream old"):
        start("t5", Principal(sub="agent:z", iss="test", roles=("agent",)), "old")
    held.append(start("t6", Principal(sub="agent:z", iss="test", roles=("agent",)), "new"))
    assert len(streams) == 4

    held[0].stop("the task was cancelled")  # a stream ended makes room again
    await _ended(held[0])
    held.append(start("t7", AGENT, "old"))
    for stream in held[1:]:
        stream.stop("the test ended")
        await _ended(stream)
    assert len(streams) == 0


async def test_closing_ends_every_stream_and_answers_what_waits(setup: Setup) -> None:
    # On shutdown (app.py's lifespan): nothing held outlives the connections it uses.
    streams = setup.streams
    waiting, idle = Upstream(asks=[FORM]), Upstream()
    held = [_held("tsk_1", streams, waiting), _held("tsk_2", streams, idle)]
    assert await streams.shown("tsk_1", within=BOUND_S)
    with anyio.fail_after(BOUND_S):
        await streams.close()
    assert all(s.task is not None and s.task.done() for s in held)
    assert len(streams) == 0 and waiting.cancelled and idle.cancelled
    [refused] = waiting.answers
    assert isinstance(refused, ClientInputRefused) and "the gateway is stopping" in refused.message
    assert [s.ended for s in held] == ["the gateway is stopping"] * 2
