"""The witness's signing key: Ed25519, PKCS#8 PEM, and its published verifier key.

The key file holds only the private key; the witness's name (a schema-less URL such
as ``witness.example.com/w1``, C2SP tlog-cosignature) is given beside it, as the
gateway's audit key is named by ``audit.origin``. `generate_witness_key` writes a new
file (mode 0600) and refuses to replace one: a witness whose key changes is a new
witness to every auditor who named the old one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.errors import ConfigError
from gateway.tlog.cosignature import WitnessKey, cosign
from gateway.tlog.note import NoteSignature, check_key_name


@dataclass(frozen=True)
class WitnessSigner:
    """A witness's name and private key; `verifier` is what auditors are given."""

    verifier: WitnessKey
    private_key: ed25519.Ed25519PrivateKey

    def __repr__(self) -> str:  # never the private key
        return f"WitnessSigner({self.verifier.encode()!r})"

    def cosign(self, note_text: str, timestamp: int) -> NoteSignature:
        return cosign(note_text, self.verifier, self.private_key, timestamp)


def _signer(name: str, private_key: ed25519.Ed25519PrivateKey) -> WitnessSigner:
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return WitnessSigner(WitnessKey(name, public), private_key)


def generate_witness_key(path: str | os.PathLike[str], name: str) -> WitnessSigner:
    """Writes a new Ed25519 key to ``path`` (mode 0600, parents created). Raises
    ConfigError if the file exists or ``name`` is not a valid key name."""
    try:
        check_key_name(name)
    except ValueError as exc:
        raise ConfigError(f"witness name: {exc}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    private_key = ed25519.Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists: a witness keeps its key (a new key is a new witness to "
            "every auditor); choose another file"
        ) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return _signer(name, private_key)


def load_witness_key(path: str | os.PathLike[str], name: str) -> WitnessSigner:
    """The witness key in ``path``. Raises ConfigError for a missing file, one that
    does not hold an Ed25519 private key, or an invalid name."""
    try:
        check_key_name(name)
    except ValueError as exc:
        raise ConfigError(f"witness name: {exc}") from None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the witness key {path}: {exc.strerror} "
            "(make one with `gateway witness keygen`)"
        ) from None
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path} does not hold an unencrypted PEM private key") from None
    if not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path} must hold an Ed25519 private key")
    return _signer(name, private_key)
