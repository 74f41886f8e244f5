"""`gateway.relays`: each request an upstream makes of the calling client is decided by
the real Rego policy (embedded engine) and recorded in a real audit log before the
client is asked; a refusal never reaches the client (docs/mcp.md, "Requests for client
input")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditLog, read_entries
from gateway.errors import ClientInputRefused
from gateway.operations import InputRequest, Operation
from gateway.policy.embedded import EmbeddedEngine
from gateway.relays import Relays
from gateway.store import create_engine, migrate
from gateway.types import Principal
from tests.support.deciding import decider_for
from tests.support.processes import write_policy

pytestmark = pytest.mark.anyio

AGENT = Principal(sub="agent:x", iss="test", roles=("agent",))
GRANTS = [
    {"role": "agent", "client_input": "elicitation/create"},
    {"role": "agent", "client_input": "roots/list", "upstream": "files"},
]
FORM = InputRequest("elicitation/create", {"mode": "form", "message": "ok?", "requestedSchema": {}})
SAMPLE = InputRequest("sampling/createMessage", {"messages": [], "maxTokens": 5})


class Client:
    """The calling client, as a test double of the surface's channel: what it declared,
    and every question it was asked."""

    def __init__(self, *declared: str) -> None:
        self.declared_methods = set(declared)
        self.asked: list[dict[str, InputRequest]] = []

    def declared(self, request: InputRequest) -> bool:
        return request.method in self.declared_methods

    def capabilities(self) -> dict[str, Any]:
        return {}

    def unreachable(self) -> str | None:
        return None

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        self.asked.append(requests)
        return {key: {"action": "accept", "content": {"secret": "s3"}} for key in requests}


@pytest.fixture
async def relays(tmp_path: Path) -> AsyncIterator[tuple[Relays, AuditLog, Any]]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = AuditLog(database, "test/audit")
    await audit.start()
    policy = EmbeddedEngine(
        write_policy(tmp_path, GRANTS, url_elicitation_hosts=["auth.example.com"])
    )
    yield Relays(decider_for(policy, 5), audit), audit, database
    await audit.close()
    database.dispose()


def _operation() -> Operation:
    return Operation(
        principal=AGENT,
        method="tools/call",
        target="demo__ask",
        arguments={},
        transport="mcp",
        request_id="req_relay",
    )


def _payloads(database: Any, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in read_entries(database) if e.kind == kind and e.payload]


async def test_an_allowed_request_is_recorded_then_asked(relays) -> None:
    relay, audit, database = relays
    client = Client("elicitation/create")
    ask = relay.governed(_operation(), client)
    answers = await ask("demo", {"k": FORM})
    assert answers["k"]["action"] == "accept" and client.asked == [{"k": FORM}]
    await audit.close()  # drain the queued answer record
    decided = _payloads(database, "relay.decision")
    assert decided[0]["decision"]["allow"] and decided[0]["upstream"] == "demo"
    answered = _payloads(database, "relay.answer")
    assert answered[0]["relay_id"] == decided[0]["relay_id"]
    assert answered[0]["status"] == "answered" and answered[0]["action"] == "accept"
    assert "s3" not in str(answered)  # the answer itself is never written


async def test_a_denied_request_never_reaches_the_client(relays) -> None:
    relay, _audit, database = relays
    client = Client("sampling/createMessage")
    with pytest.raises(ClientInputRefused) as refused:
        await relay.governed(_operation(), client)("demo", {"s": SAMPLE})
    assert "no grant lets roles agent be asked sampling/createMessage" in refused.value.message
    assert client.asked == []
    decided = _payloads(database, "relay.decision")
    assert not decided[0]["decision"]["allow"]


async def test_an_undeclared_capability_is_refused_without_policy(relays) -> None:
    relay, _audit, database = relays
    client = Client()  # declared nothing
    with pytest.raises(
        ClientInputRefused, match=r"did not declare the capability elicitation\.form"
    ):
        await relay.governed(_operation(), client)("demo", {"k": FORM})
    assert client.asked == []
    decision = _payloads(database, "relay.decision")[0]["decision"]
    assert decision["engine"] == "gateway" and not decision["allow"]


async def test_url_elicitation_only_to_allowed_hosts(relays) -> None:
    relay, _audit, _database = relays
    client = Client("elicitation/create")
    ask = relay.governed(_operation(), client)
    good = InputRequest(
        "elicitation/create", {"mode": "url", "message": "m", "url": "https://AUTH.example.com/x"}
    )
    evil = InputRequest(
        "elicitation/create", {"mode": "url", "message": "m", "url": "https://evil.example/x"}
    )
    await ask("demo", {"g": good})
    with pytest.raises(ClientInputRefused, match=r"evil\.example is not allowed"):
        await ask("demo", {"e": evil})
    assert client.asked == [{"g": good}]


async def test_one_refused_request_refuses_its_whole_round(relays) -> None:
    relay, _audit, _database = relays
    client = Client("elicitation/create", "sampling/createMessage")
    with pytest.raises(ClientInputRefused):
        await relay.governed(_operation(), client)("demo", {"k": FORM, "s": SAMPLE})
    assert client.asked == []


async def test_no_audit_no_question(relays) -> None:
    relay, audit, _database = relays
    client = Client("elicitation/create")
    await audit.close()  # the log can no longer commit anything
    with pytest.raises(ClientInputRefused, match="audit log is unavailable"):
        await relay.governed(_operation(), client)("demo", {"k": FORM})
    assert client.asked == []


async def test_urls_of_a_url_elicitation_error_are_checked_without_asking(relays) -> None:
    relay, _audit, database = relays
    client = Client("elicitation/create")
    operation = relay.with_channel(_operation(), client)
    assert operation.client_input is not None
    good = {"message": "m", "url": "https://auth.example.com/x", "elicitationId": "e"}
    await operation.client_input.check(
        "demo", InputRequest("elicitation/create", {**good, "mode": "url"})
    )
    evil = {**good, "url": "https://evil.example/x", "mode": "url"}
    with pytest.raises(ClientInputRefused):
        await operation.client_input.check("demo", InputRequest("elicitation/create", evil))
    assert client.asked == []
    keys = [p["key"] for p in _payloads(database, "relay.decision")]
    assert keys == ["error", "error"]
