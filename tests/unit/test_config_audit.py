"""The audit section of the configuration: checkpoint settings, key file, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import AuditConfig, load_config, parse_config
from gateway.errors import ConfigError

IDENTITY = {"issuers": [{"issuer": "https://idp.example", "jwks_url": "https://idp.example/j"}]}


def test_defaults() -> None:
    audit = parse_config({"identity": IDENTITY}).audit
    assert audit == AuditConfig(
        origin="agent-gateway/audit",
        checkpoint_every_entries=1000,
        checkpoint_every_s=10,
        checkpoint_dir=None,
        signing_key_file=Path("var/keys/audit-signing.pem"),
        reader_roles=["auditor"],
    )
    assert audit.checkpoint_directory(Path("/data")) == Path("/data/checkpoints")


@pytest.mark.parametrize(
    ("audit", "where"),
    [
        ({"origin": "has space"}, "audit.origin"),
        ({"origin": "a+b"}, "audit.origin"),
        ({"checkpoint_every_entries": 0}, "audit.checkpoint_every_entries"),
        ({"checkpoint_every_s": 0}, "audit.checkpoint_every_s"),
        ({"checkpoint_every": 5}, "audit.checkpoint_every"),
        ({"reader_roles": []}, "audit.reader_roles"),
    ],
)
def test_invalid_values_name_the_key(audit: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        parse_config({"identity": IDENTITY, "audit": audit})


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "gateway.yaml"
    path.parent.mkdir()
    path.write_text(
        "identity:\n  issuers: [{issuer: x, jwks_url: 'https://x/j'}]\n"
        "audit:\n  checkpoint_dir: published/checkpoints\n  signing_key_file: /abs/key.pem\n"
    )
    audit = load_config(path).audit
    assert audit.checkpoint_dir == path.parent / "published/checkpoints"
    assert audit.signing_key_file == Path("/abs/key.pem")
    path.write_text("identity:\n  issuers: [{issuer: x, jwks_url: 'https://x/j'}]\n")
    config = load_config(path)
    assert config.audit.signing_key_file == path.parent / "var/keys/audit-signing.pem"
    assert config.audit.checkpoint_directory(config.data_dir) == path.parent / "var/checkpoints"
