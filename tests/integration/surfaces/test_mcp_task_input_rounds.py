"""`TaskInput`: what an upstream's task waits for, decided by the real Rego policy
(embedded engine) and recorded in a real audit log by the one relay before its owner
is shown it, once a round; answers only to what was shown (docs/decisions/0041)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from gateway.audit import AuditLog, read_entries
from gateway.errors import ClientInputRefused
from gateway.operations import Operation
from gateway.policy.embedded import EmbeddedEngine
from gateway.relays import Relays
from gateway.store import create_engine, migrate
from gateway.surfaces.mcp_task_input import PolledChannel, TaskInput
from gateway.types import Principal
from tests.support.deciding import decider_for
from tests.support.processes import write_policy
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

AGENT = Principal(sub="agent:x", iss="test", roles=("agent",))
STRANGER = Principal(sub="agent:y", iss="test", roles=("nobody",))
GRANTS = [{"role": "agent", "client_input": "elicitation/create"}]
ASKED = {
    "confirm": {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": "Go?",
            "requestedSchema": {"type": "object", "properties": {}},
            "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "up-secret"}},
        },
    }
}
FORM = types.ClientCapabilities.model_validate({"elicitation": {"form": {}}}, by_name=False)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TaskInput, Any]]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = AuditLog(database, "test/audit")
    await audit.start()
    policy = EmbeddedEngine(write_policy(tmp_path, GRANTS))
    yield TaskInput(Relays(decider_for(policy, 5), audit)), database
    await audit.close()
    database.dispose()


def _call(principal: Principal = AGENT) -> Operation:
    return Operation(principal, "tools/call", "up__ask", {}, "mcp", "req_task")


def _kinds(database: Any, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == kind and e.payload]


async def test_a_round_is_decided_once_and_shown_as_the_gateways_task(
    setup: tuple[TaskInput, Any],
) -> None:
    task_input, database = setup
    shown = await task_input.offer("tsk_1", _call(), "up", ASKED, PolledChannel(FORM))
    again = await task_input.offer("tsk_1", _call(), "up", ASKED, PolledChannel(FORM))
    assert shown == again
    meta = shown["confirm"]["params"]["_meta"]
    assert meta["io.modelcontextprotocol/related-task"] == {"taskId": "tsk_1"}
    assert "up-secret" not in str(shown)
    decisions = _kinds(database, "relay.decision")
    assert len(decisions) == 1 and decisions[0]["decision"]["allow"]
    assert decisions[0]["request_id"] == "req_task"

    answers = task_input.answers(
        "tsk_1",
        _call(),
        {"confirm": {"action": "accept", "content": {"note": "go"}}, "unasked": {"x": 1}},
    )
    assert answers == {"confirm": {"action": "accept", "content": {"note": "go"}}}
    answered = await eventually_async(
        lambda: _kinds(database, "relay.answer"), "the relay's answer entry"
    )
    assert [(a["status"], a["action"]) for a in answered] == [("answered", "accept")]
    with pytest.raises(ClientInputRefused):  # answered already: nothing waits here
        task_input.answers("tsk_1", _call(), {"confirm": {"action": "decline"}})


@pytest.mark.parametrize("why", ["policy", "undeclared"])
async def test_a_refused_round_is_never_shown(setup: tuple[TaskInput, Any], why: str) -> None:
    task_input, database = setup
    principal = STRANGER if why == "policy" else AGENT
    capabilities = FORM if why == "policy" else None
    with pytest.raises(ClientInputRefused):
        await task_input.offer("tsk_2", _call(principal), "up", ASKED, PolledChannel(capabilities))
    decisions = _kinds(database, "relay.decision")
    assert [d["decision"]["allow"] for d in decisions] == [False]
    with pytest.raises(ClientInputRefused):
        task_input.answers("tsk_2", _call(principal), {"confirm": {"action": "accept"}})


async def test_a_malformed_answer_is_refused_and_recorded(setup: tuple[TaskInput, Any]) -> None:
    task_input, database = setup
    await task_input.offer("tsk_3", _call(), "up", ASKED, PolledChannel(FORM))
    with pytest.raises(ClientInputRefused):
        task_input.answers("tsk_3", _call(), {"confirm": {"action": "maybe"}})
    answered = await eventually_async(
        lambda: _kinds(database, "relay.answer"), "the relay's answer entry"
    )
    assert [a["status"] for a in answered] == ["error"]


async def test_a_request_the_gateway_does_not_relay_is_refused(
    setup: tuple[TaskInput, Any],
) -> None:
    task_input, _ = setup
    odd = {"x": {"method": "tools/call", "params": {}}}
    with pytest.raises(ClientInputRefused):
        await task_input.offer("tsk_4", _call(), "up", odd, PolledChannel(FORM))
