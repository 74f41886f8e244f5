"""The example configuration users copy must stay valid as the config model changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import HttpUpstream, McpHttpUpstream, McpStdioUpstream, load_config
from gateway.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.yaml"


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DB_PASSWORD", "secret")
    config = load_config(EXAMPLE)
    kinds = [type(u) for u in config.upstreams]
    assert kinds == [McpHttpUpstream, McpStdioUpstream, HttpUpstream]
    assert config.audience == "https://tools-gateway.example.com"
    assert "secret@" in config.storage.url


def test_example_config_checks_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_DB_PASSWORD", raising=False)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: ${GATEWAY_DB_PASSWORD} is not set here")
    assert "policy     embedded sha256:" in done.stdout
    unset: list[str] = []
    config = load_config(EXAMPLE, unset=unset)
    assert unset == ["GATEWAY_DB_PASSWORD"]
    assert ":${GATEWAY_DB_PASSWORD}@" in config.storage.url
    assert config.policy.path.resolve() == EXAMPLE.parent.parent / "policies"  # type: ignore[union-attr]


def test_example_config_names_a_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_DB_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="GATEWAY_DB_PASSWORD"):
        load_config(EXAMPLE)
