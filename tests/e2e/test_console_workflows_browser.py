"""Workflows in the console, in a real browser: an approver sees the published
workflows and their channels, reviews a whole plan (every step with its arguments)
and approves it from the console, and the run's detail shows its workflow version,
its plan review and its policy. Headless Debian Chromium driven by Playwright, as in
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

GRANTS = [{"role": "agent", "tool": "up__echo"}, {"role": "agent", "tool": "up__write"}]
SETTINGS = {
    "plan_review": {"ad_hoc_min_risk": "high", "approvers": ["role:approver"]},
    "workflow_channels": {"prod": {}},
}
PLAN = {
    "name": "risky",
    "steps": [
        {"id": "note", "tool": "up__echo", "arguments": {"text": "writing"}},
        {
            "id": "store",
            "tool": "up__write",
            "needs": ["note"],
            "arguments": {"key": "k1", "value": "v"},
        },
    ],
}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    upstream = McpUpstreamServer.start(tmp_path)
    server = GatewayServer.configure(
        tmp_path / "gateway",
        upstreams=[
            {
                "name": "up",
                "url": upstream.url,
                "timeout_s": 10,
                "risk": {"tools": {"write": "high"}},
            }
        ],
        policy=write_policy(tmp_path, GRANTS, **SETTINGS),
    )
    server.config["executor"] = {"workers": 1, "poll_s": 0.05}
    server.start()
    yield server
    server.stop()
    upstream.process.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def test_an_approver_reviews_a_plan_and_sees_workflows(
    gateway: GatewayServer, browser: BrowserContext
) -> None:
    author = gateway.headers(sub="user:author", roles=("workflow_author", "agent"))
    tools = httpx.get(f"{gateway.url}/v1/tools", headers=author, timeout=30).json()["tools"]
    pins = {t["name"]: t["definition_hash"] for t in tools if t["name"] == "up__echo"}
    manifest = {
        "name": "hello",
        "version": "1.0.0",
        "plan": {"steps": [{"id": "hi", "tool": "up__echo", "arguments": {"text": "hi"}}]},
        "tools": pins,
    }
    published = httpx.post(
        f"{gateway.url}/v1/workflows", json={"manifest": manifest}, headers=author, timeout=30
    )
    assert published.status_code == 201, published.text
    promoted = httpx.post(
        f"{gateway.url}/v1/workflows/hello/1.0.0/promote",
        json={"channel": "prod"},
        headers=author,
        timeout=30,
    )
    assert promoted.status_code == 200, promoted.text

    agent = gateway.headers(sub="agent:builder")
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(gateway.url + "/console")
        page.get_by_label("Approver token (JWT)").fill(
            gateway.token(sub="user:carol", roles=("approver",))
        )
        page.get_by_role("button", name="Sign in").click()
        workflows = page.get_by_role("table", name="Workflows")
        row = workflows.get_by_role("row", name=re.compile("hello"))
        expect(row).to_contain_text("1.0.0")
        expect(row).to_contain_text("prod → 1.0.0")

        created = httpx.post(f"{gateway.url}/v1/runs", json={"plan": PLAN}, headers=agent)
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        card = page.locator(".cards li", has_text="workflow__plan_review")
        expect(card).to_contain_text('"tool": "up__write"')  # the whole plan, arguments too
        expect(card).to_contain_text('"key": "k1"')
        card.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status")).to_contain_text("Approved")

        page.get_by_role("table", name="Runs").get_by_role("link", name=run_id).click()
        detail = page.locator("#run-detail")
        expect(detail).to_contain_text(f"Run {run_id} is succeeded")
        expect(detail).to_contain_text("ad hoc plan")
        expect(detail).to_contain_text("approved:")
        screenshot(page, gateway.directory, "console-workflows")
        assert problems == []
    except BaseException:
        screenshot(page, gateway.directory, "console-workflows-failure")
        raise
