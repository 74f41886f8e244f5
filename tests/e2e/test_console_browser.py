"""The approvals console in a real browser: headless Chromium (Debian's, driven by
Playwright) signs in, sees an approval that a real MCP client call created, approves it,
and the held call completes, executed exactly once.

Chromium comes from `make test-setup` (scripts/ensure-chromium.sh); Playwright's own
browser download is not used. On failure a screenshot is saved next to the gateway's
log; with GATEWAY_CONSOLE_SCREENSHOTS=DIR one is always saved there.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.mcp_client import connect
from tests.support.browser import chromium, screenshot
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

APPROVAL_GRANT = {
    "role": "agent",
    "tool": "up__write",
    "approval": {"approvers": ["role:approver"], "ttl_s": 600},
}


@pytest.fixture
def gateway(tmp_path: Path, upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        tmp_path / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(tmp_path, [APPROVAL_GRANT]),
    )
    # Held long enough for the browser to decide while the MCP call still waits.
    server.config["approvals"] = {"hold_s": 120}
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


class HeldCall(threading.Thread):
    """One MCP tools/call in the background: it blocks until a human decides."""

    def __init__(self, gateway: GatewayServer) -> None:
        super().__init__(daemon=True)
        self.gateway = gateway
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        async def call() -> Any:
            token = self.gateway.token(sub="agent:builder", act=("user:alice",))
            async with connect(self.gateway.mcp_url, token, "legacy") as client:
                return await client.call_tool("up__write", {"key": "color", "value": "blue"})

        try:
            self.result = anyio.run(call)
        except BaseException as exc:
            self.error = exc


def test_console_approves_a_held_mcp_call(
    gateway: GatewayServer, upstream: McpUpstreamServer, browser: BrowserContext
) -> None:
    served = httpx.get(gateway.url + "/console", timeout=10)
    assert "script-src 'self'" in served.headers["content-security-policy"]

    held = HeldCall(gateway)
    held.start()

    page = browser.new_page()
    problems: list[str] = []  # CSP violations and script errors show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(gateway.url + "/console")
        page.get_by_label("Approver token (JWT)").fill(
            gateway.token(sub="user:carol", roles=("approver",))
        )
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as user:carol")).to_be_visible()

        # Appears without reloading: the console polls while the call is held.
        card = page.get_by_role("article", name=re.compile(r"up__write requested by agent:builder"))
        expect(card).to_be_visible()
        expect(card).to_contain_text("user:alice")  # the delegation chain
        expect(card).to_contain_text('"value": "blue"')  # the (redacted) arguments
        expect(card).to_contain_text("needs approval by role:approver")
        expect(card.locator("[data-expires]")).to_have_text(re.compile(r"^\d+:\d\d"))
        screenshot(page, gateway.directory, "console-pending")

        card.get_by_label("Reason (required to deny)").fill("checked the key, fine")
        card.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status")).to_contain_text("Approved")
        recent = page.get_by_role("table", name="Recent decisions")
        expect(recent).to_contain_text("approved")
        expect(recent).to_contain_text("checked the key, fine")
        expect(page.get_by_text("Nothing is waiting for a decision.")).to_be_visible()
        screenshot(page, gateway.directory, "console-decided")
        assert problems == []
    except BaseException:
        screenshot(page, gateway.directory, "console-failure")
        raise

    held.join(60)
    assert not held.is_alive(), "the held MCP call did not complete after approval"
    assert held.error is None, held.error
    assert not held.result.is_error, held.result.content
    assert held.result.content[0].text == "wrote color"
    writes = [c for c in upstream.calls() if c["tool"] == "write"]
    assert [w["arguments"] for w in writes] == [{"key": "color", "value": "blue"}]


def test_console_shows_a_party_to_the_call_why_it_may_not_decide(
    gateway: GatewayServer, browser: BrowserContext
) -> None:
    held = HeldCall(gateway)
    held.start()
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(gateway.url + "/console")
        # Alice holds the approver role, but the agent acts for her: she may not decide.
        page.get_by_label("Approver token (JWT)").fill(
            gateway.token(sub="user:alice", roles=("approver",))
        )
        page.get_by_role("button", name="Sign in").click()
        card = page.get_by_role("article", name=re.compile(r"up__write requested by agent:builder"))
        expect(card).to_be_visible(timeout=30_000)
        note = card.get_by_role("note")
        expect(note).to_contain_text("you requested it, or act in its delegation chain")
        expect(note).to_have_attribute("data-why-not", "self_approval")
        expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        expect(card.get_by_role("button", name="Deny")).to_have_count(0)
        screenshot(page, gateway.directory, "console-may-not-decide")

        # The detail page says the same.
        card.get_by_role("link", name="Details").click()
        detail = page.get_by_role("region", name="Approval", exact=True)
        expect(detail.get_by_role("note")).to_have_attribute("data-why-not", "self_approval")
        expect(detail.get_by_role("button", name="Approve")).to_have_count(0)

        # The API says why too, for any client (the CLI prints it).
        (listed,) = httpx.get(
            gateway.url + "/v1/approvals",
            headers=gateway.headers(sub="user:alice", roles=("approver",)),
            timeout=10,
        ).json()["approvals"]
        assert listed["may_decide"] is False
        assert listed["why_not"]["code"] == "self_approval"
        carol = httpx.get(
            gateway.url + f"/v1/approvals/{listed['id']}",
            headers=gateway.headers(sub="user:carol", roles=("approver",)),
            timeout=10,
        ).json()
        assert carol["may_decide"] is True and carol["why_not"] is None
        assert problems == []
    except BaseException:
        screenshot(page, gateway.directory, "console-may-not-decide-failure")
        raise
    finally:
        page.close()
        # Release the held call: deny it as someone who may.
        if held.is_alive():
            approval = httpx.get(
                gateway.url + "/v1/approvals",
                headers=gateway.headers(sub="user:carol", roles=("approver",)),
                timeout=10,
            ).json()["approvals"]
            for a in approval:
                httpx.post(
                    gateway.url + f"/v1/approvals/{a['id']}/deny",
                    headers=gateway.headers(sub="user:carol", roles=("approver",)),
                    json={"reason": "test over"},
                    timeout=10,
                )
        held.join(60)
