"""Resource subscriptions and list changes through a real gateway process, with the MCP
SDK's client in both eras: 2025-11-25 ``resources/subscribe`` in a session (updates on
its standalone stream) and 2026-07-28 ``subscriptions/listen``; a subscription is
decided like a read of the URI and audited (docs/mcp.md, "Subscriptions")."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourceUpdated
from sqlalchemy import Engine

from gateway.audit import read_entries
from gateway.errors import REFUSED
from tests.e2e.conftest import conformance_gateway
from tests.e2e.mcp_client import connect
from tests.support.processes import GatewayServer
from tests.support.waiting import TIMEOUT_S

pytestmark = pytest.mark.anyio

WATCHED = "gateway:conf/test://watched-resource"
UNGRANTED = "gateway:conf/test://static-text"
GRANTS = [
    {"role": "agent", "tool": "conf__*"},
    {"role": "agent", "prompt": "conf__*"},
    {"role": "agent", "resource": WATCHED},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("subscriptions")


@pytest.fixture(scope="module")
def gateway(workdir: Path) -> Iterator[GatewayServer]:
    with conformance_gateway(workdir, GRANTS) as server:
        yield server


def _subscriptions(database: Engine) -> list[dict[str, Any]]:
    return [
        e.payload
        for e in read_entries(database)
        if e.kind == "call.attempt" and e.payload and e.payload["method"] == "resources/subscribe"
    ]


async def test_a_session_subscribes_and_hears_of_updates(
    gateway: GatewayServer, database: Engine
) -> None:
    updated = anyio.Event()
    seen: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            seen.append(str(message.params.uri))
            updated.set()

    async with connect(
        gateway.mcp_url, gateway.token(), "legacy", message_handler=on_message
    ) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK warns: removed at 2026-07-28
            await client.subscribe_resource(WATCHED)
            with pytest.raises(MCPError) as refused:
                await client.subscribe_resource(UNGRANTED)
        assert refused.value.error.code == REFUSED
        with anyio.fail_after(TIMEOUT_S):
            while not updated.is_set():
                await client.call_tool("conf__test_trigger_resource_update", {})
                with anyio.move_on_after(0.5):
                    await updated.wait()
        assert seen[0] == WATCHED  # in the gateway's form, as subscribed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK warns: removed at 2026-07-28
            await client.unsubscribe_resource(WATCHED)
    attempts = _subscriptions(database)
    assert {a["tool"] for a in attempts} >= {WATCHED, UNGRANTED}


async def test_a_listen_stream_gets_updates_and_list_changes(
    gateway: GatewayServer, database: Engine
) -> None:
    async with connect(gateway.mcp_url, gateway.token(), "2026-07-28") as client:
        async with client.listen(
            prompts_list_changed=True, resource_subscriptions=[WATCHED, UNGRANTED]
        ) as stream:
            honored = stream.honored
            assert honored is not None
            assert honored.resource_subscriptions == [WATCHED]  # policy refused the other
            events: list[Any] = []
            with anyio.fail_after(TIMEOUT_S):
                await client.call_tool("conf__test_trigger_resource_update", {})
                async for event in stream:
                    events.append(event)
                    if isinstance(event, ResourceUpdated):
                        break
                await client.call_tool("conf__test_trigger_prompt_change", {})
                async for event in stream:
                    events.append(event)
                    if isinstance(event, PromptsListChanged):
                        break
    assert ResourceUpdated(uri=WATCHED) in events
    assert any(isinstance(e, PromptsListChanged) for e in events)
