"""Where conformance passes are remembered: `policy.conformance.memo_dir`, and dev mode's
per-user cache (gateway.policy.conformance_memo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_conformance_memo_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    config_file = tmp_path / "conf" / "gateway.yaml"
    config_file.parent.mkdir()
    config_file.write_text(
        "identity:\n  issuers:\n"
        "    - {issuer: 'https://idp.example', jwks_url: 'https://idp.example/jwks'}\n"
        "policy:\n  path: policies\n  conformance: {memo_dir: memo}\n"
    )
    config = load_config(config_file)
    assert config.policy.conformance.memo_dir == config_file.parent / "memo"
    assert config.policy.conformance.memo_directory(config.data_dir) == config_file.parent / "memo"


def test_dev_mode_remembers_conformance_passes_per_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.dev import dev_setup

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    setup = dev_setup(data_dir=tmp_path / "dev", policy_path=REPO_POLICIES)
    conformance = setup.config.policy.conformance
    assert conformance.memo_directory(setup.config.data_dir) == (
        tmp_path / "cache" / "agent-gateway" / "conformance"
    )


def test_compiled_modules_are_kept_only_where_the_config_says(tmp_path: Path) -> None:
    config_file = tmp_path / "conf" / "gateway.yaml"
    config_file.parent.mkdir()
    base = (
        "identity:\n  issuers:\n"
        "    - {issuer: 'https://idp.example', jwks_url: 'https://idp.example/jwks'}\n"
    )
    config_file.write_text(base)
    assert load_config(config_file).policy.module_cache_dir is None  # no cache by default
    config_file.write_text(base + "policy:\n  module_cache_dir: wasm\n")
    assert load_config(config_file).policy.module_cache_dir == config_file.parent / "wasm"


def test_dev_mode_keeps_compiled_modules_per_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.dev import dev_setup

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    setup = dev_setup(data_dir=tmp_path / "dev", policy_path=REPO_POLICIES)
    assert setup.config.policy.module_cache_dir == tmp_path / "cache" / "agent-gateway" / "wasm"
