"""The disk holding a SQLite audit log fills up under load: calls are refused with
503 and never forwarded unaudited, the database is never corrupted, and once space
returns the same gateway process serves again and the log verifies.

The disk is a real small filesystem: a tmpfs of a few megabytes (tests/support/
small_disk.py), filled by a file until the kernel answers ENOSPC.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.store import create_engine
from tests.e2e.conftest import GRANTS
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.replicas import Answer, CallLoad, settled_audit_facts
from tests.support.small_disk import fill, small_tmpfs
from tests.support.waiting import TIMEOUT_S, eventually

DISK = "16m"
PADDING = "x" * 2000  # per call: the log grows by several KB (attempt, decision, outcome)
CLIENTS = 4
MAX_CALLS = 3000  # bound: the disk is full long before (each call takes a few KB)


@pytest.fixture
def disk() -> Iterator[Path]:
    with small_tmpfs(DISK) as folder:
        yield folder


@pytest.fixture
def gateway(tmp_path: Path, disk: Path, mcp_upstream: McpUpstreamServer) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        tmp_path / "gw",
        upstreams=[{"name": "up", "url": mcp_upstream.url}],
        policy=write_policy(tmp_path, GRANTS),
        storage_url=f"sqlite:///{disk / 'gateway.db'}",
    )
    server.start()
    yield server
    server.stop()


def integrity(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("PRAGMA integrity_check")).scalar())
    finally:
        engine.dispose()


def test_a_full_disk_refuses_calls_and_corrupts_nothing(
    gateway: GatewayServer, disk: Path, mcp_upstream: McpUpstreamServer
) -> None:
    url = gateway.config["storage"]["url"]
    marker = f"full-{uuid.uuid4().hex[:6]}"
    assert gateway.process is not None
    pid = gateway.process.popen.pid
    filler = fill(disk)  # the database's growth now meets ENOSPC

    load = CallLoad(
        [gateway],
        tool="up__echo",
        total=MAX_CALLS,
        clients=CLIENTS,
        marker=marker,
        argument=lambda text: {"text": f"{text} {PADDING}"},
    ).start()
    refused = eventually(
        lambda: load.count(lambda a: a.status == 503) >= 10 or len(load.answers) >= MAX_CALLS,
        "calls refused on the full disk",
        detail=gateway.log,
    )
    assert refused
    load.stop()
    answers = load.wait(TIMEOUT_S * 5)
    # Space returns: the same process serves again.
    filler.unlink()
    eventually(
        lambda: load_once(gateway, f"{marker}-back-{uuid.uuid4().hex[:4]}").status == 200,
        "calls answered again once space returned",
        detail=gateway.log,
    )
    assert gateway.process.popen.poll() is None and gateway.process.popen.pid == pid

    statuses = {a.status for a in answers}
    assert statuses <= {200, 503}, [a for a in answers if a.status not in (200, 503)][:3]
    refusals = [a for a in answers if a.status == 503]
    assert len(refusals) >= 10, "the disk never filled"
    assert {a.body.split('"code":"')[1].split('"')[0] for a in refusals} == {"audit_unavailable"}

    forwarded = {
        c["arguments"]["text"].split(" ")[0]
        for c in mcp_upstream.calls()
        if c["tool"] == "echo" and c["arguments"]["text"].startswith(marker)
    }
    facts = settled_audit_facts(url)
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]
    # Outcomes of calls forwarded just before the disk filled were kept, and written
    # once space returned.
    assert not facts.outcome_unknown, facts.outcome_unknown[:5]
    audited = {
        text.split(" ")[0] for text, refs in facts.refs_by_text.items() if set(refs) & facts.allowed
    }
    assert not forwarded - audited, sorted(forwarded - audited)[:3]
    assert not {a.text for a in refusals} & forwarded  # a refused call never reached it
    assert integrity(url) == "ok"

    gateway.stop()
    assert integrity(url) == "ok"
    verified = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "--db", url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 2,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def load_once(gateway: GatewayServer, marker: str) -> Answer:
    load = CallLoad([gateway], tool="up__echo", total=1, clients=1, marker=marker)
    return load.start().wait(TIMEOUT_S)[0]
