"""The dev gateway starts its demo upstream's process before it builds itself
(docs/decisions/0037): that process must end as it always did — when the start fails
after it was started, and when the gateway is killed with SIGKILL (its stdin closes).
How much sooner the gateway is ready is measured by bench/start_time.py, never here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.dev_gateway import DevGateway, environment, lay_out_checkout
from tests.support.processes import free_port, processes_with_env
from tests.support.waiting import eventually


def _demo_processes(root: Path) -> set[int]:
    """The demo upstream's processes of the dev gateway in ``root`` (by its sandbox)."""
    sandbox = (root / "var" / "dev" / "sandbox").resolve()
    return processes_with_env("GATEWAY_DEMO_SANDBOX", str(sandbox))


def test_a_start_that_fails_after_the_demo_started_leaves_no_process(tmp_path: Path) -> None:
    root = lay_out_checkout(tmp_path / "checkout", copied=("policies",))
    # Compiled only once the gateway builds itself, after the demo's process started.
    (root / "policies" / "gateway" / "broken.rego").write_text(
        "package gateway.broken\n\nthis is not rego\n"
    )
    port = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--dev", "--port", port, "--log-level", "debug"],
        capture_output=True,
        text=True,
        cwd=root,
        env=environment(),
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "upstream demo: process started ahead" in done.stderr, done.stderr
    assert "gateway: error: policy folder" in done.stderr
    assert "does not compile" in done.stderr
    assert "Traceback" not in done.stderr  # the error reads as itself
    assert _demo_processes(root) == set()


def test_a_gateway_killed_with_sigkill_leaves_no_demo_process(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    dev = DevGateway.start(root)
    try:
        (demo,) = _demo_processes(root)
        os.kill(dev.process.popen.pid, signal.SIGKILL)
        dev.process.popen.wait(30)
        eventually(lambda: demo not in _demo_processes(root), "the demo process ended")
    finally:
        dev.stop()
