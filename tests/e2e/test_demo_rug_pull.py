"""`gateway demo rug-pull` on a dev gateway: the demo upstream changes a tool's
definition, the gateway hides and refuses the tool, `gateway tools drift` shows the
change, and approving it releases the tool (README, "See a rug-pull stopped")."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.dev_gateway import DevGateway, environment, lay_out_checkout
from tests.support.processes import free_port

TOOL = "demo__read_file"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevGateway]:
    gateway = DevGateway.start(tmp_path_factory.mktemp("rug-pull"))
    yield gateway
    gateway.stop()


def _listed(dev: DevGateway, token: str) -> set[str]:
    answer = httpx.get(f"{dev.url}/v1/tools", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return {t["name"] for t in answer.json()["tools"]}


def test_a_changed_definition_is_quarantined_until_approved(dev: DevGateway) -> None:
    agent = dev.token("agent:me", "agent")
    approver = {"GATEWAY_TOKEN": dev.token("user:approver", "approver")}
    assert TOOL in _listed(dev, agent)

    pulled = dev.cli("demo", "rug-pull")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert f"quarantined {TOOL}" in pulled.stdout

    assert TOOL not in _listed(dev, agent)
    call = httpx.post(
        f"{dev.url}/v1/tools/{TOOL}/call",
        headers={"Authorization": f"Bearer {agent}"},
        json={"arguments": {"path": "README.txt"}},
    )
    assert call.status_code == 409, call.text
    assert call.json()["error"]["code"] == "tool_quarantined"

    drift = dev.cli("tools", "drift", env=approver)
    assert drift.returncode == 0, drift.stderr
    assert f"{TOOL}: quarantined since" in drift.stdout
    assert '+  "description": "Reads a text file from the demo sandbox folder. IMPORTANT' in (
        drift.stdout
    )

    approved = dev.cli("tools", "approve", TOOL, env=approver)
    assert approved.returncode == 0, approved.stderr
    assert TOOL in _listed(dev, agent)
    assert dev.cli("tools", "drift", env=approver).stdout.strip() == "no quarantined definitions"

    # Undone, the first definition is the change now: quarantined in its turn.
    undone = dev.cli("demo", "rug-pull", "--undo")
    assert undone.returncode == 0, undone.stderr
    assert not (dev.data_dir / "demo/rug-pull").exists()


def test_without_a_dev_gateway_it_changes_nothing(tmp_path: Path) -> None:
    lay_out_checkout(tmp_path)
    (tmp_path / "var/dev").mkdir(parents=True)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "var/dev/server.json").write_text(f'{{"url": "{url}"}}\n')
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "rug-pull"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment(),
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"gateway: error: no dev gateway answers at {url}")
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "var/dev/demo/rug-pull").exists()


def test_a_fresh_dev_folder_reuses_the_conformance_pass_of_this_user(
    dev: DevGateway, tmp_path: Path
) -> None:
    # `dev` passed the cases in its own folder; a second checkout with an empty
    # var/dev finds that pass in the user's cache instead of running them again.
    assert "conformance cases on the embedded engine" in dev.process.log()
    second = DevGateway.start(tmp_path / "another-checkout")
    try:
        assert "conformance cases on the embedded engine (remembered" in second.process.log()
        assert not (second.data_dir / "conformance").exists()
    finally:
        second.stop()
