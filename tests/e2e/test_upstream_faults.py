"""An upstream that hangs or drops connections: the gateway bounds every call to it by
the upstream's ``timeout_s``, answers 504/502 (never 500), and nothing else waits for
it: calls to another upstream go on meanwhile, and executor loops busy with a hanging
step are free again after the timeout. When the upstream comes back, calls to it pass
again without a restart; every call is in the log with its outcome.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy, Mode, fault_proxy
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.replicas import settled_audit_facts
from tests.support.waiting import TIMEOUT_S, eventually

BAD_TIMEOUT_S = 3  # the faulty upstream's timeout_s: how long a hanging call is held
HANGING_CALLS = 6
GOOD_CALLS = 20
LOOPS = 2
UPSTREAM_ERRORS = {502: "upstream_unavailable", 504: "upstream_timeout"}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[GatewayServer, FaultProxy, McpUpstreamServer]]:
    good = McpUpstreamServer.start(tmp_path)
    bad = McpUpstreamServer.start(tmp_path)
    with fault_proxy(bad.port) as proxy:
        gateway = GatewayServer.configure(
            tmp_path / "gateway",
            upstreams=[
                {"name": "good", "url": good.url, "timeout_s": 60},
                {
                    "name": "bad",
                    "url": f"http://127.0.0.1:{proxy.port}/mcp",
                    "timeout_s": BAD_TIMEOUT_S,
                },
            ],
            policy=write_policy(
                tmp_path,
                [{"role": "agent", "tool": "good__*"}, {"role": "agent", "tool": "bad__*"}],
            ),
        )
        gateway.config["executor"] = {"workers": LOOPS, "poll_s": 0.1}
        gateway.start()  # the proxy passes: both catalogs load
        yield gateway, proxy, good
        gateway.stop()
    good.process.stop()
    bad.process.stop()


def call(gateway: GatewayServer, tool: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        json={"arguments": {"text": text}},
        headers=gateway.headers(sub="agent:faults"),
        timeout=TIMEOUT_S * 2,
    )


def submit(gateway: GatewayServer, tool: str, label: str) -> str:
    plan = {"name": "faults", "steps": [{"id": "only", "tool": tool, "arguments": {"text": label}}]}
    submitted = httpx.post(
        f"{gateway.url}/v1/runs",
        json={"plan": plan},
        headers={**gateway.headers(sub="agent:faults"), "Idempotency-Key": label},
        timeout=60,
    )
    assert submitted.status_code == 201, submitted.text
    return str(submitted.json()["run_id"])


def finished(gateway: GatewayServer, run_id: str) -> dict[str, Any] | None:
    run = httpx.get(
        f"{gateway.url}/v1/runs/{run_id}", headers=gateway.headers(sub="agent:faults"), timeout=60
    ).json()
    return run if run["status"] in ("succeeded", "failed", "cancelled") else None


def assert_upstream_error(response: httpx.Response) -> None:
    assert response.status_code in UPSTREAM_ERRORS, response.text
    assert response.json()["error"]["code"] == UPSTREAM_ERRORS[response.status_code]


def test_a_hanging_then_dropping_upstream_holds_up_nothing_else(
    setup: tuple[GatewayServer, FaultProxy, McpUpstreamServer],
) -> None:
    gateway, proxy, good = setup
    marker = f"faults-{uuid.uuid4().hex[:6]}"
    assert call(gateway, "bad__echo", f"{marker}-before").status_code == 200

    proxy.set_mode(Mode.HANG)
    hanging: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda i=i: hanging.append(call(gateway, "bad__echo", f"{marker}-hang-{i}")),
            daemon=True,
        )
        for i in range(HANGING_CALLS)
    ]
    for thread in threads:
        thread.start()
    # Runs whose one step hangs: every executor loop of the gateway is taken by one.
    stuck_runs = [submit(gateway, "bad__echo", f"{marker}-stuck-{i}") for i in range(LOOPS)]
    eventually(lambda: proxy.hanging >= 1, "a call held by the hanging upstream")
    # Meanwhile the other upstream answers every call.
    answers = [call(gateway, "good__echo", f"{marker}-good-{i}") for i in range(GOOD_CALLS)]
    assert [a.status_code for a in answers] == [200] * GOOD_CALLS, [a.text for a in answers]
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert len(hanging) == HANGING_CALLS
    for response in hanging:
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "upstream_timeout"
    # The loops are free again: runs on the good upstream finish, the stuck ones failed.
    good_runs = [submit(gateway, "good__echo", f"{marker}-run-{i}") for i in range(LOOPS)]
    for run_id in good_runs:
        run = eventually(lambda run_id=run_id: finished(gateway, run_id), f"run {run_id}")
        assert run["status"] == "succeeded", run
    for run_id in stuck_runs:
        run = eventually(lambda run_id=run_id: finished(gateway, run_id), f"run {run_id}")
        assert run["status"] == "failed", run

    proxy.set_mode(Mode.DROP)
    for i in range(3):
        assert_upstream_error(call(gateway, "bad__echo", f"{marker}-drop-{i}"))
    assert call(gateway, "good__echo", f"{marker}-good-during-drop").status_code == 200

    # Back: the same process reconnects.
    proxy.set_mode(Mode.PASS)
    eventually(
        lambda: (
            call(gateway, "bad__echo", f"{marker}-back-{uuid.uuid4().hex[:4]}").status_code == 200
        ),
        "the upstream answers through the gateway again",
        detail=gateway.log,
    )

    facts = settled_audit_facts(gateway.config["storage"]["url"])
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]
    assert not facts.outcome_unknown, facts.outcome_unknown[:5]
    for i in range(HANGING_CALLS):
        [ref] = facts.refs_by_text[f"{marker}-hang-{i}"]
        assert facts.entries[("call.outcome", ref)] == 1
    assert good.calls()  # the good upstream really served
