"""Runs in the console, in a real browser: an agent submits a plan over REST, and an
approver (a holder of ``executor.viewer_roles``) watches it appear in the console's
Runs list, progress without a reload, and opens its steps. Headless Debian Chromium
driven by Playwright, as in test_console_browser.py."""

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

GRANTS = [{"role": "agent", "tool": "up__echo"}, {"role": "agent", "tool": "up__effect"}]
PLAN = {
    "name": "nightly-digest",
    "steps": [
        {"id": "hello", "tool": "up__echo", "arguments": {"text": "hello console"}},
        # The run waits here until the test approves, once the console showed it mid-run
        # (a timed pause would race a busy machine's browser).
        {"id": "pause", "approval": {"approvers": ["role:approver"]}, "needs": ["hello"]},
        {
            "id": "record",
            "tool": "up__effect",
            "needs": ["pause"],
            "arguments": {"label": "${{ steps.hello.output.result }}"},
        },
    ],
}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    upstream = McpUpstreamServer.start(tmp_path)
    server = GatewayServer.configure(
        tmp_path / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(tmp_path, GRANTS),
    )
    server.config["executor"] = {"workers": 1, "poll_s": 0.05}
    server.start()
    yield server
    server.stop()
    upstream.process.stop()


def waiting_approval(gateway: GatewayServer, agent: dict[str, str], run_id: str) -> str | None:
    """The approval the run's gate waits for, once it does."""
    run = httpx.get(f"{gateway.url}/v1/runs/{run_id}", headers=agent, timeout=30).json()
    [gate] = [s for s in run["steps"] if s["id"] == "pause"]
    return gate["approval_id"] if gate["status"] == "waiting" and gate["approval_id"] else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def test_an_agents_run_shows_in_the_approvers_console(
    gateway: GatewayServer, browser: BrowserContext
) -> None:
    agent = gateway.headers(sub="agent:builder")
    approver = gateway.headers(sub="user:carol", roles=("approver",))
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
        expect(page.get_by_text("No runs to show.")).to_be_visible()

        # Submitted after sign-in: it can only appear through the polling.
        created = httpx.post(f"{gateway.url}/v1/runs", json={"plan": PLAN}, headers=agent)
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]

        runs = page.get_by_role("table", name="Runs")
        row = runs.get_by_role("row", name=re.compile(run_id))
        expect(row).to_contain_text("agent:builder")
        expect(row).to_contain_text("nightly-digest")
        expect(row).to_contain_text(re.compile(r"running|waiting"))  # caught mid-run
        row.get_by_role("link", name=run_id).click()
        expect(page.locator("#run-detail")).to_contain_text(re.compile(r"running|waiting"))

        # Let it go on: the gate's approval, decided over REST.
        gate = eventually(lambda: waiting_approval(gateway, agent, run_id), "the gate waiting")
        decided = httpx.post(
            f"{gateway.url}/v1/approvals/{gate}/approve", json={}, headers=approver, timeout=30
        )
        assert decided.status_code == 200, decided.text

        steps = page.get_by_role("table", name=f"Steps of run {run_id}")
        # The open detail follows the run to its end without a reload.
        expect(page.locator("#run-detail")).to_contain_text(f"Run {run_id} is succeeded")
        hello = steps.get_by_role("row", name=re.compile(r"^hello"))
        expect(hello).to_contain_text("up__echo")
        expect(hello).to_contain_text("succeeded")
        expect(hello).to_contain_text('"result": "hello console"')  # output, as text
        expect(steps.get_by_role("row", name=re.compile(r"^pause"))).to_contain_text("approval")
        record = steps.get_by_role("row", name=re.compile(r"^record"))
        expect(record).to_contain_text("up__effect")
        expect(record).to_contain_text("succeeded")
        expect(row).to_contain_text("succeeded")
        expect(row).to_contain_text("3/3")
        screenshot(page, gateway.directory, "console-run")
        assert problems == []
    except BaseException:
        screenshot(page, gateway.directory, "console-run-failure")
        raise

    # The same rule over REST: approvers read every run, but cancel none of others';
    # other agents see nothing of it.
    assert httpx.get(f"{gateway.url}/v1/runs/{run_id}", headers=approver).status_code == 200
    cancel = httpx.post(f"{gateway.url}/v1/runs/{run_id}/cancel", headers=approver)
    assert cancel.status_code == 404
    other = gateway.headers(sub="agent:other")
    assert httpx.get(f"{gateway.url}/v1/runs", headers=other).json()["runs"] == []
    assert httpx.get(f"{gateway.url}/v1/runs/{run_id}", headers=other).status_code == 404
