"""The witness's key file: made once (mode 0600, never replaced), loaded back with the
same verifier key, refused when it is not an Ed25519 private key."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ConfigError
from gateway.tlog.cosignature import WitnessKey
from gateway.witness.keys import generate_witness_key, load_witness_key


def test_generated_key_loads_back_with_the_same_verifier(tmp_path: Path) -> None:
    made = generate_witness_key(tmp_path / "keys" / "w.pem", "witness.test/w1")
    assert stat.S_IMODE((tmp_path / "keys" / "w.pem").stat().st_mode) == 0o600
    loaded = load_witness_key(tmp_path / "keys" / "w.pem", "witness.test/w1")
    assert loaded.verifier == made.verifier
    assert WitnessKey.parse(made.verifier.encode()) == made.verifier
    assert "PRIVATE" not in repr(loaded)


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    generate_witness_key(tmp_path / "w.pem", "witness.test/w1")
    before = (tmp_path / "w.pem").read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        generate_witness_key(tmp_path / "w.pem", "witness.test/w1")
    assert (tmp_path / "w.pem").read_bytes() == before


def test_bad_names_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name"):
        generate_witness_key(tmp_path / "a.pem", "has space")
    with pytest.raises(ConfigError, match="keygen"):
        load_witness_key(tmp_path / "missing.pem", "witness.test/w1")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="PEM"):
        load_witness_key(tmp_path / "junk.pem", "witness.test/w1")
    ecdsa = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(ecdsa)
    with pytest.raises(ConfigError, match="Ed25519"):
        load_witness_key(tmp_path / "ec.pem", "witness.test/w1")


def test_keygen_command_prints_the_verifier_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "gateway", "witness", "keygen", "--name", "witness.test/w1"]
    args += ["--key", str(tmp_path / "w.pem")]
    first = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    printed = WitnessKey.parse(first.stdout.strip().splitlines()[-1])
    assert printed == load_witness_key(tmp_path / "w.pem", "witness.test/w1").verifier
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
