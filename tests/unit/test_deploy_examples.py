"""The example configuration users copy must stay valid as the config model changes."""

from __future__ import annotations

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


def test_example_config_names_a_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_DB_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="GATEWAY_DB_PASSWORD"):
        load_config(EXAMPLE)
