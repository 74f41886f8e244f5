"""A 2025-11-25 upstream's task that waits for input, owned by a 2026-07-28 client
(docs/decisions/0044), end to end: a real gateway process in front of our 2025-11-25
tasks upstream (`tests.support.tasks_upstream` in legacy mode: its ``ask`` task sends
an elicitation on the stream of a ``tasks/result``), and raw 2026-07-28 requests.

The gateway holds that ``tasks/result`` in the background; each case proves what the
client was shown (or that it never was), what reached the upstream from its call log
(the answer, or the error in its place), the relay's entries under the task's call,
that the call's outcome is recorded once, that the gateway holds nothing of the task
once it ended (``gateway_task_input_streams``), and that the log verifies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_mcp_task_input import (
    GRANTS,
    RELATED,
    _answered,
    _relays,
    _text,
    _upstream_task,
    askable,
)
from tests.e2e.test_mcp_task_passthrough import (
    ModernClient,
    TasksUpstream,
    _audit,
    _outcomes,
    _verified,
    started_upstreams,
    tasks_gateway,
)
from tests.support.processes import GatewayServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("task-input-held")


@pytest.fixture(scope="module")
def upstreams(workdir: Path) -> Iterator[dict[str, TasksUpstream]]:
    with started_upstreams(workdir) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(workdir: Path, upstreams: dict[str, TasksUpstream]) -> Iterator[GatewayServer]:
    with tasks_gateway(workdir, upstreams, GRANTS) as server:
        yield server


def _streams_held(gateway: GatewayServer) -> float:
    """``gateway_task_input_streams`` on the gateway's /metrics."""
    text = httpx.get(gateway.url + "/metrics", timeout=10).text
    found = re.search(r"^gateway_task_input_streams (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def _polled(
    client: ModernClient, task_id: str, done: Any, what: str, seen: list[dict[str, Any]]
) -> dict[str, Any]:
    """``tasks/get`` until ``done(task)`` holds (a bounded loop on the state, every
    answer kept in ``seen``)."""

    async def look() -> dict[str, Any] | None:
        task = (await client.request("tasks/get", {"taskId": task_id}))["result"]
        seen.append(task)
        return task if done(task) else None

    return await eventually_async(look, what, detail=lambda: str(seen[-3:]))


async def _nothing_held(gateway: GatewayServer) -> None:
    await eventually_async(
        lambda: _streams_held(gateway) == 0, "no tasks/result held once the task ended"
    )


async def test_a_modern_owner_answers_what_a_legacy_upstreams_task_waits_for(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
) -> None:
    upstream = upstreams["old"]
    topic = "held-confirm"
    owner = askable(gateway, gateway.token("agent:owner"))
    other = askable(gateway, gateway.token("agent:other"))
    created = await owner.request("tools/call", {"name": "old__ask", "arguments": {"topic": topic}})
    task_id = created["result"]["taskId"]
    request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    seen: list[dict[str, Any]] = []
    task = await _polled(owner, task_id, lambda t: "inputRequests" in t, "the request shown", seen)
    assert task["status"] == "input_required", task
    [(key, question)] = task["inputRequests"].items()
    assert key.startswith("in_")  # the gateway's key
    assert question["method"] == "elicitation/create"
    assert question["params"]["message"] == f"Confirm research on {topic}?"
    assert question["params"]["_meta"][RELATED] == {"taskId": task_id}
    upstream_id = _upstream_task(upstream, topic)
    assert upstream_id not in str(seen)
    # Decided, and durable, before it was shown; decided once, however often polled.
    again = await owner.request("tasks/get", {"taskId": task_id})
    assert again["result"]["inputRequests"] == task["inputRequests"]
    decisions, _ = _relays(gateway, request_id)
    assert [(d["method"], d["decision"]["allow"]) for d in decisions] == [
        ("elicitation/create", True)
    ]
    assert decisions[0]["upstream"] == "old"
    assert _streams_held(gateway) >= 1

    # Another principal's answer is refused as for an unknown task, and audited.
    forged = {key: {"action": "accept", "content": {"note": "from another"}}}
    refused = await other.request("tasks/update", {"taskId": task_id, "inputResponses": forged})
    assert refused["error"]["code"] == -32602, refused
    assert [
        (e.payload["method"], e.payload["reason"]) for e in _audit(gateway, "task.refused", task_id)
    ] == [("tasks/update", "not_owner")]
    assert not _answered(upstream, upstream_id)
    # An answer that is no result of its method is refused, and leaves the request waiting.
    bad = await owner.request(
        "tasks/update", {"taskId": task_id, "inputResponses": {key: {"action": "maybe"}}}
    )
    assert bad["error"]["code"] == -32602, bad
    assert not _answered(upstream, upstream_id)

    answer = {key: {"action": "accept", "content": {"note": "go"}}}
    updated = await owner.request("tasks/update", {"taskId": task_id, "inputResponses": answer})
    assert updated["result"]["resultType"] == "complete", updated  # an acknowledgement
    done = await _polled(
        owner, task_id, lambda t: t["status"] == "completed", "the task completed", seen
    )
    assert _text(done["result"]) == f"confirmed {topic}: go"
    # The answer reached the upstream as the response on the tasks/result stream.
    assert [a["answer"] for a in _answered(upstream, upstream_id)] == [answer[key]]
    assert not [c for c in upstream.calls("tasks/update")]  # no such method at 2025-11-25
    answered = await eventually_async(
        lambda: _relays(gateway, request_id)[1], "the relay's answer entry"
    )
    assert [(a["status"], a["action"]) for a in answered] == [("answered", "accept")]
    assert "go" not in str(answered)  # by hash only
    assert len(await _outcomes(gateway, request_id)) == 1
    later = await owner.request("tasks/get", {"taskId": task_id})
    assert later["result"]["status"] == "completed"
    assert len(await _outcomes(gateway, request_id)) == 1  # recorded once
    await _nothing_held(gateway)
    _verified(gateway)


@pytest.mark.parametrize("elicitation", [True, False])
async def test_a_request_refused_in_a_legacy_upstreams_task_reaches_it_as_an_error(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream], elicitation: bool
) -> None:
    """Policy grants this role no client input, or the client's requests do not declare
    elicitation: the owner is never shown the request, the upstream gets the refusal
    as the error answering it, and its task fails."""
    upstream = upstreams["old"]
    topic = f"held-refused-{elicitation}"
    if elicitation:
        caller = askable(gateway, gateway.token("agent:unasked", roles=("unasked",)))
    else:
        caller = askable(gateway, gateway.token("agent:owner"), elicitation=False)
    created = await caller.request(
        "tools/call", {"name": "old__ask", "arguments": {"topic": topic}}
    )
    task_id = created["result"]["taskId"]
    request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    seen: list[dict[str, Any]] = []
    task = await _polled(
        caller, task_id, lambda t: t["status"] == "failed", "the task failed", seen
    )
    assert not [t for t in seen if "inputRequests" in t], seen
    assert not [t for t in seen if t["status"] == "input_required"], seen
    upstream_id = _upstream_task(upstream, topic)
    [refusal] = _answered(upstream, upstream_id)
    assert refusal["answer"] is None
    reason = "no grant" if elicitation else "did not declare"
    assert reason in refusal["error"], refusal
    assert task["error"]["code"] == -32060, task
    decisions, _ = _relays(gateway, request_id)
    assert [d["decision"]["allow"] for d in decisions] == [False]
    assert len(await _outcomes(gateway, request_id)) == 1
    await _nothing_held(gateway)
    _verified(gateway)


async def test_cancelling_the_task_ends_the_held_stream(
    gateway: GatewayServer, upstreams: dict[str, TasksUpstream]
) -> None:
    """The owner cancels while the upstream's request waits for it: the upstream's task
    is cancelled, the request is answered with an error (recorded), nothing is held."""
    upstream = upstreams["old"]
    topic = "held-cancelled"
    owner = askable(gateway, gateway.token("agent:owner"))
    created = await owner.request("tools/call", {"name": "old__ask", "arguments": {"topic": topic}})
    task_id = created["result"]["taskId"]
    request_id = created["result"]["_meta"]["io.agentgateway/decision"]["request_id"]
    seen: list[dict[str, Any]] = []
    await _polled(owner, task_id, lambda t: "inputRequests" in t, "the request shown", seen)
    cancelled = await owner.request("tasks/cancel", {"taskId": task_id})
    assert cancelled["result"]["resultType"] == "complete", cancelled
    upstream_id = _upstream_task(upstream, topic)
    assert [c for c in upstream.calls("tasks/cancel") if c["taskId"] == upstream_id]
    answered = await eventually_async(
        lambda: _relays(gateway, request_id)[1], "the relay's answer entry"
    )
    assert [a["status"] for a in answered] == ["error"]
    assert "cancelled" in answered[0]["error"]["message"]
    await _nothing_held(gateway)
    got = await owner.request("tasks/get", {"taskId": task_id})
    assert got["result"]["status"] == "cancelled", got
    _verified(gateway)
