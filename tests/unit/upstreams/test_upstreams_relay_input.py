"""Which caller an upstream's request for client input goes to (`mcp_client_input`,
`mcp_in_flight`): the caller whose request it arrived on, else the one request in
flight, else nobody — a request is never guessed between two callers; and roots, never
anyone, on a shared connection; and a log message outside any request
(`mcp_requests.relay_log`), to the one request in flight on an upstream session held
for one caller."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest

from gateway.operations import ClientInput, InputRequest, LogSink
from gateway.upstreams.mcp_client_input import relay_input
from gateway.upstreams.mcp_in_flight import InFlight
from gateway.upstreams.mcp_requests import relay_log

pytestmark = pytest.mark.anyio

FORM = types.ElicitRequestFormParams(
    message="who?", requested_schema={"type": "object", "properties": {"who": {"type": "string"}}}
)


def _client_input(asked: list[str], name: str) -> ClientInput:
    async def ask(upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        asked.append(name)
        return {key: {"action": "accept", "content": {"who": name}} for key in requests}

    async def check(upstream: str, request: InputRequest) -> None:
        return None

    return ClientInput(ask, {"elicitation": {"form": {}}}, check)


async def test_a_request_without_a_caller_goes_to_the_one_in_flight() -> None:
    asked: list[str] = []
    in_flight = InFlight()
    elicit, _, _ = relay_input("up", in_flight)
    refused = await elicit(None, FORM)
    assert isinstance(refused, types.ErrorData) and "outside any request" in refused.message
    first = in_flight.enter(_client_input(asked, "alice"))
    answer = await elicit(None, FORM)
    assert isinstance(answer, types.ElicitResult) and asked == ["alice"]
    second = in_flight.enter(_client_input(asked, "bob"))
    assert isinstance(await elicit(None, FORM), types.ErrorData)  # nobody is guessed
    in_flight.leave(first)
    await elicit(None, FORM)
    assert asked == ["alice", "bob"]
    in_flight.leave(second)
    assert in_flight.sole() is None


async def test_a_listing_in_flight_is_no_caller() -> None:
    in_flight = InFlight()
    in_flight.enter(None)  # the catalog re-reading the lists
    elicit, _, _ = relay_input("up", in_flight)
    assert isinstance(await elicit(None, FORM), types.ErrorData)


async def test_roots_are_never_relayed_on_a_shared_connection() -> None:
    """An upstream that keeps roots per session would serve one caller's roots to every
    later caller of the shared connection: refused, even to the caller in flight, who
    is never asked."""
    asked: list[str] = []
    in_flight = InFlight()
    in_flight.enter(_client_input(asked, "alice"))
    _, _, roots = relay_input("up", in_flight)
    refused = await roots(None)
    assert isinstance(refused, types.ErrorData) and "shared connection" in refused.message
    assert asked == []


async def test_a_log_message_without_a_caller_goes_to_the_one_in_flight_at_its_level() -> None:
    """On an upstream session held for one caller (`mcp_caller_sessions`), a log message
    outside any request goes to the one request in flight there, filtered at the level
    that request asked for; with none or several, to nobody."""
    sent: list[tuple[str, str]] = []

    def sink(name: str, level: str) -> LogSink:
        async def send(level: str, data: Any, logger: str | None) -> None:
            sent.append((name, str(data)))

        return LogSink(level, send)

    in_flight = InFlight()
    relay = relay_log("up", in_flight.sole_log)
    message = types.LoggingMessageNotificationParams(level="info", data="hello")
    await relay(message)  # nobody in flight
    first = in_flight.enter(None, sink("alice", "info"))
    await relay(message)
    await relay(types.LoggingMessageNotificationParams(level="debug", data="quiet"))
    second = in_flight.enter(None, sink("bob", "debug"))
    await relay(message)  # two in flight: nobody is guessed
    in_flight.leave(first)
    await relay(message)
    in_flight.leave(second)
    assert sent == [("alice", "hello"), ("bob", "hello")]


def test_the_last_request_leaving_tells_that_it_is_idle() -> None:
    idle: list[bool] = []
    in_flight = InFlight()
    in_flight.on_idle = lambda: idle.append(True)
    first, second = in_flight.enter(None), in_flight.enter(None)
    in_flight.leave(first)
    assert idle == [] and in_flight.busy
    in_flight.leave(second)
    in_flight.leave(second)  # leaving twice tells once
    assert idle == [True] and not in_flight.busy
