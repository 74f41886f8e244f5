"""Resource subscriptions and list changes through a real gateway process, with the MCP
SDK's client in both eras: 2025-11-25 ``resources/subscribe`` in a session (updates on
its standalone stream) and 2026-07-28 ``subscriptions/listen``; a subscription is
decided like a read of the URI and audited (docs/mcp.md, "Subscriptions")."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourceUpdated
from sqlalchemy import Engine

from gateway.audit import read_entries
from gateway.errors import REFUSED
from gateway.store import create_engine
from tests.e2e.conftest import conformance_gateway
from tests.e2e.mcp_client import connect
from tests.support.processes import GatewayServer
from tests.support.waiting import TIMEOUT_S, eventually

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
    # One update, told once (the SDK hands a stream's events to its message handler
    # too: the gateway passed each on twice).
    assert events.count(ResourceUpdated(uri=WATCHED)) == 1, events
    assert any(isinstance(e, PromptsListChanged) for e in events)


@pytest.mark.parametrize("engine", ["embedded", "opa"])
async def test_a_subscription_the_changed_policy_refuses_ends_at_its_next_update(
    tmp_path: Path, engine: str
) -> None:
    """A live subscription is decided again after a policy change, at its next update:
    refused now, it ends there (the refusal audited) and no update reaches the client.
    On an OPA server without bundles, whose revision says nothing of a change, at
    every update."""
    with conformance_gateway(tmp_path, GRANTS, sidecar=engine == "opa") as server:
        engine_db = create_engine(server.config["storage"]["url"])
        try:
            async with connect(server.mcp_url, server.token(), "2026-07-28") as client:
                async with client.listen(
                    prompts_list_changed=True, resource_subscriptions=[WATCHED]
                ) as stream:
                    with anyio.fail_after(TIMEOUT_S):
                        await client.call_tool("conf__test_trigger_resource_update", {})
                        async for event in stream:
                            if isinstance(event, ResourceUpdated):
                                break  # subscribed, and updates arrive
                    if engine == "opa":
                        # Pushed to OPA itself: the gateway's revision stays opa:<url>.
                        before = _revision(server)
                        _push_grants_to_opa(server, GRANTS[:2])
                        assert _revision(server) == before
                    else:
                        before = _revision(server)
                        _grant(tmp_path / "policy-data" / "policy", GRANTS[:2])  # WATCHED no more
                        eventually(lambda: _revision(server) != before, "the policy reloaded")
                    await client.call_tool("conf__test_trigger_resource_update", {})
                    eventually(lambda: _refused_again(engine_db), "the subscription refused")
                    # A list change after it on the same stream: nothing came between.
                    await client.call_tool("conf__test_trigger_prompt_change", {})
                    events: list[Any] = []
                    with anyio.fail_after(TIMEOUT_S):
                        async for event in stream:
                            events.append(event)
                            if isinstance(event, PromptsListChanged):
                                break
                    assert not any(isinstance(e, ResourceUpdated) for e in events), events
        finally:
            engine_db.dispose()


def _grant(policy: Path, grants: list[dict[str, Any]]) -> None:
    data = json.loads((policy / "data.json").read_text())
    data["gateway_data"]["grants"] = grants
    # Whole or not at all: the gateway's watcher may read the file mid-write, reject
    # the half, and see no later change within the same mtime tick.
    (policy / "data.json.new").write_text(json.dumps(data))
    (policy / "data.json.new").replace(policy / "data.json")


def _push_grants_to_opa(server: GatewayServer, grants: list[dict[str, Any]]) -> None:
    url = f"{server.config['policy']['url']}/v1/data/gateway_data/grants"
    pushed = httpx.put(url, json=grants, timeout=TIMEOUT_S)
    assert pushed.status_code == 204, pushed.text


def _revision(server: GatewayServer) -> str:
    ready = httpx.get(f"{server.url}/readyz", timeout=TIMEOUT_S).json()
    return str(ready["checks"]["policy"]["revision"])


def _refused_again(engine: Engine) -> bool:
    decisions = {
        e.ref: e.payload["decision"]["allow"]
        for e in read_entries(engine)
        if e.kind == "call.decision" and e.payload
    }
    return any(
        e.payload["tool"] == WATCHED and decisions.get(e.ref) is False
        for e in read_entries(engine)
        if e.kind == "call.attempt" and e.payload and e.payload["method"] == "resources/subscribe"
    )
