"""Human approval end to end: real MCP SDK clients call a real gateway process whose
policy holds one tool of the recording upstream for approval; approvers decide
through the REST API and the CLI. The upstream's call log proves what ran, and how
often."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_types import CallToolResult

from gateway.audit import read_entries
from gateway.operations import ProgressCallback
from gateway.store import create_engine
from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import ERAS, connect
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually_async
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

# The gateway holds a call far longer than any test takes to decide it, so a call
# decided "within the wait" never races its end on a busy machine; a call a test does
# not decide is made with `Prefer: wait=0` (REST) or on the brief gateway, whose hold
# ends at once.
HOLD_S = 120
BRIEF_HOLD_S = 0.5
EXPIRING_TTL_S = 2
GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
    {
        "role": "agent",
        "tool": "up__login",
        "approval": {"approvers": ["role:approver"], "ttl_s": EXPIRING_TTL_S},
    },
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("approvals")


@pytest.fixture(scope="module")
def upstream(workdir: Path) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def gateway(
    workdir: Path, upstream: McpUpstreamServer, webhook: WebhookReceiver
) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(workdir, GRANTS),
    )
    server.config["approvals"] = {
        "hold_s": HOLD_S,
        "sweep_interval_s": 0.5,
        "webhook_url": webhook.url,
    }
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def brief(workdir: Path, upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    """A gateway whose hold ends almost at once: for what a held call answers when
    nobody decides in time."""
    server = GatewayServer.configure(
        workdir / "brief",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(workdir / "brief", GRANTS),
    )
    server.config["approvals"] = {"hold_s": BRIEF_HOLD_S}
    server.start()
    yield server
    server.stop()


# --- helpers -------------------------------------------------------------------------


def approver(gateway: GatewayServer, sub: str = "user:bob", **kwargs: Any) -> str:
    return gateway.token(sub, roles=kwargs.pop("roles", ("approver",)), **kwargs)


async def call(
    gateway: GatewayServer,
    tool: str,
    arguments: dict[str, Any],
    *,
    token: str | None = None,
    era: str = "2026-07-28",
    progress: ProgressCallback | None = None,
) -> CallToolResult:
    async with connect(gateway.mcp_url, token or gateway.token("agent:e2e"), era) as client:
        return await client.call_tool(tool, arguments, progress_callback=progress)


async def api(
    gateway: GatewayServer, method: str, path: str, token: str, body: Any = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        headers = {"Authorization": f"Bearer {token}"}
        return await http.request(method, path, json=body, headers=headers)


async def requested(gateway: GatewayServer, tool: str, arguments: dict[str, Any]) -> str:
    """Asks for ``tool`` as agent:e2e without waiting for a decision (REST, `Prefer:
    wait=0`); the id of the approval it is pending on."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        response = await http.post(
            f"/v1/tools/{tool}/call",
            json={"arguments": arguments},
            headers={**gateway.headers(sub="agent:e2e"), "Prefer": "wait=0"},
        )
    assert response.status_code == 202, response.text
    return str(response.json()["approval_id"])


async def pending_for(gateway: GatewayServer, key: str) -> dict[str, Any]:
    """The pending approval whose (displayed) arguments have this key."""

    async def found() -> dict[str, Any] | None:
        listed = await api(gateway, "GET", "/v1/approvals?status=pending", approver(gateway))
        assert listed.status_code == 200, listed.text
        for approval in listed.json()["approvals"]:
            if approval["arguments"].get("key") == key or approval["arguments"].get("user") == key:
                return dict(approval)
        return None

    return await eventually_async(found, f"a pending approval for {key}")


async def decide(
    gateway: GatewayServer, approval_id: str, verb: str, token: str, reason: str | None = None
) -> httpx.Response:
    return await api(
        gateway, "POST", f"/v1/approvals/{approval_id}/{verb}", token, {"reason": reason}
    )


def ran(upstream: McpUpstreamServer, tool: str, key: str) -> int:
    """How often the upstream executed ``tool`` with this key (or user)."""
    return sum(
        1
        for c in upstream.calls()
        if c["tool"] == tool and key in (c["arguments"].get("key"), c["arguments"].get("user"))
    )


def meta(result: CallToolResult) -> dict[str, Any]:
    assert result.meta is not None
    details: dict[str, Any] = result.meta[META_KEY]
    return details


async def cli(gateway: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    """`gateway approvals …` as an approver would run it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "approvals", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GATEWAY_URL": gateway.url, "GATEWAY_TOKEN": approver(gateway)},
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def audit_entries(gateway: GatewayServer, ref: str) -> list[tuple[str, dict[str, Any]]]:
    engine = create_engine(gateway.config["storage"]["url"])
    try:
        return [(e.kind, e.payload or {}) for e in read_entries(engine, ref=ref)]
    finally:
        engine.dispose()


# --- held calls ------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_approved_within_the_wait_runs_in_the_same_request(
    gateway: GatewayServer, upstream: McpUpstreamServer, webhook: WebhookReceiver, era: str
) -> None:
    key = unique("within")
    messages: list[str | None] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    held = asyncio.create_task(
        call(gateway, "up__write", {"key": key, "value": "v"}, era=era, progress=progress)
    )
    approval = await pending_for(gateway, key)
    assert approval["tool"] == "up__write" and approval["requester"]["sub"] == "agent:e2e"
    assert approval["may_decide"] is True
    decided = await decide(gateway, approval["id"], "approve", approver(gateway), "looks fine")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["channel"] == "rest"

    result = await asyncio.wait_for(held, HOLD_S + 5)
    assert not result.is_error and result.content[0].text == f"wrote {key}"
    assert meta(result)["status"] == "ok" and meta(result)["approval_id"] == approval["id"]
    assert ran(upstream, "write", key) == 1
    assert messages and messages[0] == f"waiting for approval {approval['id']} (expires in 59 min)"

    # The webhook heard of the request, with a link into the console.
    bodies = await asyncio.to_thread(webhook.wait_for, 1)
    [announced] = [b for b in bodies if b["approval"]["id"] == approval["id"]]
    assert announced["url"] == f"{gateway.url}/console#/approvals/{approval['id']}"
    # Audited: the request, the decision, and an outcome naming the approval.
    kinds = [kind for kind, _ in audit_entries(gateway, approval["id"])]
    assert kinds == ["approval.request", "approval.decision"]
    outcomes = await eventually_async(  # appended after the answer (docs/decisions/0005)
        lambda: [
            p for k, p in audit_entries(gateway, meta(result)["request_id"]) if k == "call.outcome"
        ],
        "the call's outcome in the audit log",
    )
    assert outcomes[0]["approval_id"] == approval["id"]


async def test_denied_within_the_wait_is_refused_with_the_reason(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    key = unique("denied")
    held = asyncio.create_task(call(gateway, "up__write", {"key": key, "value": "v"}))
    approval = await pending_for(gateway, key)
    no_reason = await decide(gateway, approval["id"], "deny", approver(gateway))
    assert no_reason.status_code == 400 and no_reason.json()["error"]["code"] == "reason_required"
    denied = await decide(gateway, approval["id"], "deny", approver(gateway), "not on a Friday")
    assert denied.status_code == 200, denied.text

    result = await asyncio.wait_for(held, HOLD_S + 5)
    assert result.is_error and "not on a Friday" in result.content[0].text
    assert "not executed" in result.content[0].text
    assert meta(result)["status"] == "denied"
    assert meta(result)["error"]["code"] == "approval_denied"
    assert ran(upstream, "write", key) == 0
    # Deciding again is refused: a decision is single-use.
    again = await decide(gateway, approval["id"], "approve", approver(gateway))
    assert again.status_code == 409 and again.json()["error"]["code"] == "approval_not_pending"
    from_cli = await cli(gateway, "approve", approval["id"])
    assert from_cli.returncode == 1
    assert "HTTP 409 approval_not_pending" in from_cli.stderr and "user:bob" in from_cli.stderr
    shown = await cli(gateway, "show", approval["id"])
    assert "denied" in shown.stdout and "not on a Friday" in shown.stdout
    assert "you may decide:  no: this approval is denied, no longer pending" in shown.stdout


async def test_an_expired_approval_refuses_the_call_as_expiry(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    user = unique("expiring")
    # Its approval lives 2 s; the hold would last 120 s: only the expiry ends it.
    result = await call(gateway, "up__login", {"user": user, "api_key": "sk-secret"})
    assert result.is_error and meta(result)["error"]["code"] == "approval_expired"
    assert "expired" in result.content[0].text
    assert ran(upstream, "login", user) == 0

    shown = await api(
        gateway, "GET", f"/v1/approvals/{meta(result)['approval_id']}", approver(gateway)
    )
    approval = shown.json()
    assert approval["status"] == "expired" and approval["decided_by"] == "system:expiry"
    assert approval["arguments"] == {"user": user, "api_key": "[redacted]"}
    decisions = [p for k, p in audit_entries(gateway, approval["id"]) if k == "approval.decision"]
    assert [d["status"] for d in decisions] == ["expired"]
    assert "sk-secret" not in str(audit_entries(gateway, approval["id"]))


async def test_a_call_nobody_decides_within_the_wait_answers_pending(
    brief: GatewayServer, upstream: McpUpstreamServer
) -> None:
    key = unique("undecided")
    first = await call(brief, "up__write", {"key": key, "value": "v"})
    assert first.is_error and meta(first)["status"] == "pending_approval"
    approval_id = meta(first)["approval_id"]
    text = first.content[0].text
    assert text.startswith("pending_approval:") and approval_id in text
    assert "retry the same call" in text
    assert ran(upstream, "write", key) == 0


async def test_approved_after_the_wait_the_retry_runs_exactly_once(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    key = unique("later")
    arguments = {"key": key, "value": "v"}
    approval_id = await requested(gateway, "up__write", arguments)
    assert ran(upstream, "write", key) == 0

    # Approved from the CLI, with the approver's token.
    listed = await cli(gateway, "list")
    assert approval_id in listed.stdout and "up__write" in listed.stdout
    cli_run = await cli(gateway, "approve", approval_id)
    assert cli_run.returncode == 0, cli_run.stderr
    assert f"{approval_id} approved by user:bob" in cli_run.stdout

    # Three retries at once: one runs the call, the others get its recorded outcome.
    retries = await asyncio.gather(*(call(gateway, "up__write", arguments) for _ in range(3)))
    assert all(not r.is_error and r.content[0].text == f"wrote {key}" for r in retries)
    assert ran(upstream, "write", key) == 1
    executed = [r for r in retries if "replay_of" not in meta(r)]
    assert len(executed) == 1
    original = meta(executed[0])["request_id"]
    assert all(meta(r)["replay_of"] == original for r in retries if r is not executed[0])

    # A later retry: still the recorded outcome, still one execution.
    later = await call(gateway, "up__write", arguments)
    assert later.content[0].text == f"wrote {key}" and meta(later)["replay_of"] == original
    assert ran(upstream, "write", key) == 1
    shown = await api(gateway, "GET", f"/v1/approvals/{approval_id}", gateway.token("agent:e2e"))
    assert shown.json()["execution_state"] == "done"
    assert shown.json()["outcome"]["status"] == "ok"
    decision = [p for k, p in audit_entries(gateway, approval_id) if k == "approval.decision"]
    assert decision[0]["channel"] == "cli"


# --- who may decide ----------------------------------------------------------------------


async def test_self_approval_and_the_wrong_role_are_refused(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    key = unique("self")
    requester = gateway.token("agent:self", roles=("agent", "approver"), act=("user:alice",))
    held = asyncio.create_task(
        call(gateway, "up__write", {"key": key, "value": "v"}, token=requester)
    )
    approval = await pending_for(gateway, key)

    own = await decide(gateway, approval["id"], "approve", requester)
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
    alice = approver(gateway, "user:alice")  # the user the agent acts for
    on_behalf = await decide(gateway, approval["id"], "approve", alice)
    assert on_behalf.status_code == 403 and on_behalf.json()["error"]["code"] == "self_approval"
    viewer = gateway.token("user:dave", roles=("viewer",))
    wrong_role = await decide(gateway, approval["id"], "approve", viewer)
    assert wrong_role.status_code == 403
    assert wrong_role.json()["error"]["code"] == "not_an_approver"
    hidden = await api(gateway, "GET", f"/v1/approvals/{approval['id']}", viewer)
    assert hidden.status_code == 404
    mine = await api(gateway, "GET", f"/v1/approvals/{approval['id']}", requester)
    assert mine.status_code == 200 and mine.json()["may_decide"] is False
    assert mine.json()["why_not"]["code"] == "self_approval"
    # An approver who is no party to the call may decide it.
    bob = await api(gateway, "GET", f"/v1/approvals/{approval['id']}", approver(gateway))
    assert bob.json()["may_decide"] is True and bob.json()["why_not"] is None
    assert ran(upstream, "write", key) == 0

    # The refusals used nothing up: a real approver still decides, and the call runs.
    assert (await decide(gateway, approval["id"], "approve", approver(gateway))).status_code == 200
    result = await asyncio.wait_for(held, HOLD_S + 5)
    assert not result.is_error and ran(upstream, "write", key) == 1
    refused = [p for k, p in audit_entries(gateway, approval["id"]) if k == "approval.refused"]
    assert [r["error"]["code"] for r in refused] == [
        "self_approval",
        "self_approval",
        "not_an_approver",
    ]


async def test_other_spellings_of_a_party_are_that_party(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    # One identity per person (docs/identity.md): "appr1", "USER:appr1" and
    # "user:appr1" of one issuer are one person, in every check.
    key = unique("spelling")
    requester = gateway.token("agent:spell", roles=("agent",), act=("user:appr1",))
    held = asyncio.create_task(
        call(gateway, "up__write", {"key": key, "value": "v"}, token=requester)
    )
    approval = await pending_for(gateway, key)
    for sub in ("appr1", "USER:appr1", "User:appr1", "AGENT:spell"):
        refused = await decide(gateway, approval["id"], "approve", approver(gateway, sub))
        assert refused.status_code == 403, (sub, refused.text)
        assert refused.json()["error"]["code"] == "self_approval", sub
    assert ran(upstream, "write", key) == 0
    assert (await decide(gateway, approval["id"], "approve", approver(gateway))).status_code == 200
    result = await asyncio.wait_for(held, HOLD_S + 5)
    assert not result.is_error and ran(upstream, "write", key) == 1
    refusals = [p for k, p in audit_entries(gateway, approval["id"]) if k == "approval.refused"]
    assert [r["approver"]["sub"] for r in refusals] == [
        "appr1",
        "USER:appr1",
        "User:appr1",
        "AGENT:spell",
    ]


async def test_edited_arguments_do_not_ride_on_an_old_approval(
    gateway: GatewayServer, upstream: McpUpstreamServer
) -> None:
    key = unique("edited")
    approval_id = await requested(gateway, "up__write", {"key": key, "value": "small"})
    assert (await decide(gateway, approval_id, "approve", approver(gateway))).status_code == 200

    edited = await requested(gateway, "up__write", {"key": key, "value": "DROP EVERYTHING"})
    assert edited != approval_id  # a new request for the new arguments
    assert ran(upstream, "write", key) == 0

    original = await call(gateway, "up__write", {"key": key, "value": "small"})
    assert not original.is_error and meta(original)["approval_id"] == approval_id
    assert [
        c["arguments"]["value"] for c in upstream.calls() if c["arguments"].get("key") == key
    ] == ["small"]


async def test_rest_prefer_wait_zero_answers_pending_at_once(gateway: GatewayServer) -> None:
    key = unique("rest")
    # The gateway's hold is two minutes; a client that stops listening after one (a
    # bound for a busy machine, not a measurement) hears the answer only if `wait=0`
    # ended the hold at once.
    async with httpx.AsyncClient(base_url=gateway.url, timeout=HOLD_S / 2) as http:
        response = await http.post(
            "/v1/tools/up__write/call",
            json={"arguments": {"key": key, "value": "v"}},
            headers={**gateway.headers(sub="agent:e2e"), "Prefer": "wait=0"},
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending_approval" and body["approval_id"].startswith("apr_")
    assert body["error"]["details"]["approval_id"] == body["approval_id"]
