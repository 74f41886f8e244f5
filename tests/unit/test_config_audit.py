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


WITNESS_KEY = "witness.example/w1+016ea3cf+BKc0jQUeO8XEJFWjRWzSNTF/2gqZ/UJRvxk4IlCG6QOH"


def test_witnesses_are_configured_with_url_and_key() -> None:
    audit = parse_config(
        {
            "identity": IDENTITY,
            "audit": {"witnesses": [{"url": "https://w.example", "key": WITNESS_KEY}]},
        }
    ).audit
    [witness] = audit.witnesses
    assert (witness.url, witness.key, witness.timeout_s) == ("https://w.example", WITNESS_KEY, 5.0)


@pytest.mark.parametrize(
    ("witnesses", "where"),
    [
        ([{"url": "https://w.example", "key": "not a key"}], r"audit.witnesses\[0\].key"),
        ([{"url": "ftp://w.example", "key": WITNESS_KEY}], r"audit.witnesses\[0\].url"),
        (
            [{"url": "https://w.example", "key": WITNESS_KEY, "timeout_s": 0}],
            r"audit.witnesses\[0\].timeout_s",
        ),
        (
            [{"url": "https://a.example", "key": WITNESS_KEY}] * 2,
            "listed twice",
        ),
    ],
)
def test_invalid_witnesses_are_refused(witnesses: list[dict[str, object]], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        parse_config({"identity": IDENTITY, "audit": {"witnesses": witnesses}})


def test_a_plain_note_key_is_not_a_witness_key() -> None:
    from gateway.components import witness_endpoints

    plain = "example.com/audit-log+2d4b2424+Af5f2Vjtx3JsQP3lfge8fLw8Xfz0yJE/PpE8mjRjPKyo"
    config = parse_config(
        {"identity": IDENTITY, "audit": {"witnesses": [{"url": "https://w.example", "key": plain}]}}
    )
    with pytest.raises(ConfigError, match=r"audit.witnesses\[0\].key: .*type 0x04"):
        witness_endpoints(config)
