"""Debian's Chromium driven by Playwright, for the console's browser tests.

Playwright's own browser download does not work on these machines; the test setup
installs Debian's chromium (scripts/ensure-chromium.sh) and the tests launch it by path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.support.waiting import TIMEOUT_S

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps trying to reach Google's services (offline here).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(profile: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile folder (no state from earlier runs)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium missing at /usr/bin/chromium: run scripts/ensure-chromium.sh")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        # Playwright's waits (actions and `expect`) poll until their condition holds;
        # their deadlines are the suite's generous ones, for a busy machine.
        context.set_default_timeout(TIMEOUT_S * 1000)
        expect.set_options(timeout=TIMEOUT_S * 1000)
        yield context
        context.close()


def screenshot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
    extra = os.environ.get("GATEWAY_CONSOLE_SCREENSHOTS")
    if extra:
        page.screenshot(path=str(Path(extra) / f"{name}.png"), full_page=True)
