"""tools/list over a catalog of 1,000 tools: one policy decision for the whole list
(data.gateway.visible), the right subset for each principal, on REST and MCP; and a
tools/call that completes while another client lists in a loop (its latency is
measured in bench/gateway_overhead.py, not here)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import anyio
import httpx
import pytest

from tests.e2e.mcp_client import ERAS, connect
from tests.support.processes import POLICIES, GatewayServer, McpUpstreamServer

TOOLS = 1000


@pytest.fixture
def gateway(tmp_path: Path, mcp_upstream: McpUpstreamServer) -> GatewayServer:
    policy = tmp_path / "policy"
    shutil.copytree(POLICIES, policy)
    shutil.rmtree(policy / "conformance")  # they pin the shipped grants, not these
    data = json.loads((policy / "data.json").read_text())
    data["gateway_data"]["grants"] = [
        {"role": "agent", "tool": "up__echo"},
        {"role": "reader", "tool": "many__*", "max_risk": "low"},
        {"role": "picker", "tool": "many__t0007"},
        {"role": "picker", "tool": "many__t0999"},
    ]
    (policy / "data.json").write_text(json.dumps(data))
    many = {
        "name": "many",
        "kind": "http",
        "base_url": "http://127.0.0.1:9",  # never called: these tests only list
        # Every tenth tool is high risk: above the reader's max_risk, so hidden.
        "risk": {"default": "low", "tools": {f"t{i:04d}": "high" for i in range(0, TOOLS, 10)}},
        "tools": [{"name": f"t{i:04d}", "path": f"/t/{i}"} for i in range(TOOLS)],
    }
    return GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}, many],
        policy=policy,
    ).start()


def rest_names(gateway: GatewayServer, **token: object) -> list[str]:
    response = httpx.get(f"{gateway.url}/v1/tools", headers=gateway.headers(**token), timeout=30)
    assert response.status_code == 200, response.text
    return [tool["name"] for tool in response.json()["tools"]]


async def mcp_subsets(gateway: GatewayServer, era: str) -> list[list[str]]:
    """What a reader, a picker and a principal without roles list over MCP in ``era``."""
    subsets = []
    for sub, roles in (("agent:r", ("reader",)), ("agent:p", ("picker",)), ("agent:n", ())):
        async with connect(gateway.mcp_url, gateway.token(sub=sub, roles=roles), era) as client:
            tools = (await client.list_tools()).tools
        subsets.append([tool.name for tool in tools if tool.name.startswith("many__")])
    return subsets


def test_each_principal_sees_its_subset_of_a_thousand_tools(gateway: GatewayServer) -> None:
    try:
        reader = rest_names(gateway, sub="agent:reader", roles=("reader",))
        assert reader == [f"many__t{i:04d}" for i in range(TOOLS) if i % 10]  # 900, in order
        assert rest_names(gateway, sub="agent:picker", roles=("picker",)) == [
            "many__t0007",
            "many__t0999",
        ]
        assert rest_names(gateway, sub="agent:nobody", roles=()) == []
        # Again: the cached answer is the same answer.
        assert rest_names(gateway, sub="agent:reader", roles=("reader",)) == reader
        # A longer chain than the policy allows hides everything, cached or not.
        chain = ("agent:a", "agent:b", "agent:c", "agent:d", "user:alice")
        assert rest_names(gateway, sub="agent:reader", roles=("reader",), act=chain) == []

        # MCP in both eras, twice (the second time from the caches): the same subsets.
        for era in ERAS + ERAS:
            picked = ["many__t0007", "many__t0999"]
            assert anyio.run(mcp_subsets, gateway, era) == [reader, picked, []]
    finally:
        gateway.stop()


def test_a_call_completes_while_another_client_lists_in_a_loop(gateway: GatewayServer) -> None:
    stop = threading.Event()
    lists: list[int] = []

    def list_in_a_loop() -> None:
        # Each list a new subject, so none is answered from the cache.
        while not stop.is_set() and len(lists) < 200:
            names = rest_names(gateway, sub=f"agent:lister-{len(lists)}", roles=("reader",))
            lists.append(len(names))

    lister = threading.Thread(target=list_in_a_loop)
    try:
        lister.start()
        for _ in range(5):
            response = httpx.post(
                f"{gateway.url}/v1/tools/up__echo/call",
                headers=gateway.headers(),
                json={"arguments": {"text": "hi"}},
                timeout=30,
            )
            assert response.status_code == 200, response.text
    finally:
        stop.set()
        lister.join(60)
        gateway.stop()
    assert lists and set(lists) == {900}
