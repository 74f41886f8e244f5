"""The audit explorer page in a real browser: an auditor signs in at /console/audit,
filters the log by principal and kind, opens the entry the filter found, and sees it
verified with its payload, inclusion proof, checkpoint and receipt; a token without
an auditor role is refused. Headless Debian Chromium driven by Playwright, as in
test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.support.browser import chromium, screenshot
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually

GRANTS = [{"role": "agent", "tool": "up__echo"}]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    upstream = McpUpstreamServer.start(tmp_path)
    server = GatewayServer.configure(
        tmp_path / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(tmp_path, GRANTS),
    )
    server.config["audit"].update({"checkpoint_every_entries": 1000, "checkpoint_every_s": 0.2})
    server.start()
    yield server
    server.stop()
    upstream.process.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def _call(gateway: GatewayServer, sub: str, text: str) -> str:
    response = httpx.post(
        f"{gateway.url}/v1/tools/up__echo/call",
        headers=gateway.headers(sub=sub),
        json={"arguments": {"text": text}},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def _wait_for_checkpoint(gateway: GatewayServer, auditor: str) -> None:
    newest = httpx.get(
        f"{gateway.url}/v1/audit/entries?limit=1",
        headers={"Authorization": f"Bearer {auditor}"},
        timeout=5,
    ).json()["entries"][0]["seq"]

    def covered() -> bool:
        served = httpx.get(gateway.url + "/v1/audit/checkpoint", timeout=30)
        return served.status_code == 200 and int(served.text.splitlines()[1]) > newest

    eventually(covered, f"a checkpoint covering entry {newest}")


def test_an_auditor_filters_the_log_and_sees_an_entry_verified(
    gateway: GatewayServer, browser: BrowserContext
) -> None:
    served = httpx.get(gateway.url + "/console/audit", timeout=10)
    assert "script-src 'self'" in served.headers["content-security-policy"]
    assert httpx.get(gateway.url + "/console/static/audit.html", timeout=10).status_code == 404

    _call(gateway, "agent:alice", "from alice")
    bob = _call(gateway, "agent:bob", "from bob")
    auditor = gateway.token(sub="user:audrey", roles=("auditor",))
    _wait_for_checkpoint(gateway, auditor)

    page = browser.new_page()
    problems: list[str] = []  # CSP violations and script errors show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(gateway.url + "/console/audit")

        # A token without an auditor role: refused, and told why.
        page.get_by_label("Auditor token (JWT)").fill(
            gateway.token(sub="user:carol", roles=("approver",))
        )
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("Not allowed")
        expect(page.get_by_role("alert")).to_contain_text("not_an_auditor")
        page.get_by_role("button", name="Sign out").click()
        problems.clear()  # the browser logs the refused request itself as an error

        page.get_by_label("Auditor token (JWT)").fill(auditor)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as user:audrey")).to_be_visible()
        results = page.get_by_role("table", name="Entries")
        expect(results.get_by_role("row", name=re.compile(r"call\.attempt"))).to_have_count(2)
        expect(page.locator("#checked-against")).to_contain_text("Checked against the latest")

        page.get_by_label("Principal (sub)").fill("agent:bob")
        page.get_by_label("Kind").fill("call.attempt")
        page.get_by_role("button", name="Search").click()
        row = results.get_by_role("row", name=re.compile(bob))
        expect(row).to_have_count(1)
        expect(results.locator("tbody tr")).to_have_count(1)
        expect(row).to_contain_text("agent:bob")
        expect(row).to_contain_text("up__echo")
        expect(row).to_contain_text("verified")
        screenshot(page, gateway.directory, "audit-results")

        row.get_by_role("link").click()
        entry = page.locator("#entry")
        expect(entry.get_by_role("status")).to_contain_text("Verified: intact, and included")
        expect(entry.get_by_label("Payload")).to_contain_text('"text": "from bob"')
        expect(entry).to_contain_text("Leaf index")
        expect(entry).to_contain_text("Proof hashes")
        expect(entry).to_contain_text("test.gateway/audit")  # the signed note's origin
        expect(entry.get_by_label("Receipt")).to_contain_text("c2sp.org/tlog-proof@v1")
        expect(entry.get_by_label("Leaf", exact=True)).to_contain_text('"kind":"call.attempt"')
        screenshot(page, gateway.directory, "audit-entry")

        # A time window in the future finds nothing.
        page.get_by_role("button", name="Clear").click()
        page.get_by_label("Since (your local time)").fill("2999-01-01T00:00:00")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_text("No entries match.")).to_be_visible()
        assert problems == []
    except BaseException:
        screenshot(page, gateway.directory, "audit-failure")
        raise
