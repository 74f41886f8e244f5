"""Restarting a dev gateway (issue 14: a restart should take ≤ 2 s, measured by
bench/start_time.py, never here): what a restart skips, and what it must not.

It loads the policy's compiled module instead of compiling it again, remembers the
conformance pass, and leaves Alembic alone at the newest schema; it still answers
/readyz only once the demo upstream is connected, and still decides by policy."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.dev_gateway import DevGateway


def _ready(dev: DevGateway) -> dict:
    # The first answer the gateway gives at all: it listens only once it has started.
    answer = httpx.get(dev.url + "/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_restart_reuses_what_it_can_and_is_ready_only_with_its_upstream(
    tmp_path: Path,
) -> None:
    root = tmp_path / "checkout"
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    modules = tmp_path / "cache" / "agent-gateway" / "wasm"

    first = DevGateway.start(root, env=cache)
    try:
        assert _ready(first)["upstreams"]["demo"] == {"connected": True, "detail": None}
    finally:
        first.stop()
    (entry,) = modules.glob("module-*.cwasm")
    compiled_at = entry.stat().st_mtime_ns
    first_log = (root / "gateway.log").read_text()
    assert "Running upgrade" in first_log  # a new database is migrated

    second = DevGateway.start(root, env=cache)
    try:
        assert _ready(second)["upstreams"]["demo"] == {"connected": True, "detail": None}
        agent = second.token("agent:me", "agent")
        echo = httpx.post(
            f"{second.url}/v1/tools/demo__echo/call",
            headers={"Authorization": f"Bearer {agent}"},
            json={"arguments": {"text": "again"}},
            timeout=10,
        )
        assert echo.status_code == 200, echo.text
        outside = httpx.post(
            f"{second.url}/v1/tools/demo__read_file/call",
            headers={"Authorization": f"Bearer {agent}"},
            json={"arguments": {"path": "../keys/dev-issuer.pem"}},
            timeout=10,
        )
        assert outside.status_code == 403, outside.text  # policy decides as before
    finally:
        second.stop()
    restart_log = (root / "gateway.log").read_text()[len(first_log) :]
    # Loaded, not compiled: a compilation would have rewritten the entry.
    assert [p.stat().st_mtime_ns for p in modules.glob("module-*.cwasm")] == [compiled_at]
    assert "conformance cases on the embedded engine (remembered" in restart_log
    assert "alembic" not in restart_log
