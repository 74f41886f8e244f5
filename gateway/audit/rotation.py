"""Rotating the audit signing key (`gateway audit rotate-key`).

File scheme (no config change): ``audit.signing_key_file`` always holds the current
key. A rotation copies the old key beside it as ``<stem>.<old key ID>.pem``
(`retained_key_path`) and then replaces the configured file with a new key. The
gateway loads both (`load_signing_keys`); the checkpointer signs with every loaded
key the ``audit_keys`` record allows for the checkpoint's size.

Record: the new key is valid from the current tree size S, the old one until
S + overlap (inclusive), so checkpoints of sizes S..S+overlap carry both signatures
and a client that knows either key can follow the change. A ``key.rotation`` entry
states both keys and the sizes in the log itself.

Order: files first (the old key is copied before the configured file is replaced, so
it is never lost), then the record, then the entry. A failure after the files leaves
a gateway that, restarted, signs with both keys and registers the new one itself;
the error says what is missing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine

from gateway.audit.keys import (
    SigningKey,
    load_signing_key,
    register_key,
    retained_key_path,
    retire_key,
)
from gateway.audit.reader import chain_head
from gateway.audit.records import AuditRecord
from gateway.audit.sequencer import AuditLog
from gateway.audit.stored_checkpoints import latest_checkpoint
from gateway.errors import ConfigError
from gateway.tlog.keys import AuditKey

ROTATION_KIND = "key.rotation"
# Entries the log may grow by after the rotation while the old key still signs: time
# to restart every gateway process so it loads the new key (until then a process
# holding only the old key cannot checkpoint past the overlap).
DEFAULT_OVERLAP = 10_000


@dataclass(frozen=True)
class Rotation:
    """What `rotate_key` did."""

    old: AuditKey
    new: AuditKey
    retained_file: Path
    entry_seq: int


def rotate_key(engine: Engine, origin: str, key_file: Path, *, overlap: int) -> Rotation:
    """Replaces the signing key in ``key_file`` by a new one, valid from the current
    tree size; retires the old one at that size + ``overlap``; appends a
    ``key.rotation`` entry. Raises ConfigError when there is no key to rotate or it
    is retired already, ValueError for a negative overlap."""
    if overlap < 0:
        raise ValueError("--overlap must be 0 or more")
    if not key_file.exists():
        raise ConfigError(
            f"{key_file} does not exist: there is no audit signing key to rotate "
            "(the gateway creates one on first start)"
        )
    old = load_signing_key(key_file, origin)
    # As the checkpointer registers keys: a key the gateway never started with signs
    # from the size after the latest checkpoint.
    latest = latest_checkpoint(engine)
    old_record = register_key(
        engine, old.verifier, valid_from_size=0 if latest is None else latest.size + 1
    )
    if old_record.valid_to_size is not None:
        raise ConfigError(
            f"audit key {old.verifier.encode()} was retired at size "
            f"{old_record.valid_to_size}; {key_file} holds no key in service"
        )
    head = chain_head(engine)
    size = 0 if head is None else head.size

    private = ed25519.Ed25519PrivateKey.generate()
    new = SigningKey(origin, private)
    retained = retained_key_path(key_file, old.key_id)
    _write_file(retained, key_file.read_bytes(), replace=False)
    _write_file(
        key_file,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        replace=True,
    )

    new_record = register_key(engine, new.verifier, valid_from_size=size)
    # A key registered for a size after the head (no checkpoint since it started)
    # cannot end before it starts; it then signs just its first size.
    old_record = retire_key(
        engine, old.verifier, valid_to_size=max(size + overlap, old_record.valid_from_size)
    )
    log = AuditLog(engine, origin)
    (entry_seq,) = log.append_sync(
        AuditRecord(
            ROTATION_KIND,
            f"key:{new.key_id.hex()}",
            {
                "old_key_id": old.key_id.hex(),
                "new_key_id": new.key_id.hex(),
                "old_key": old.verifier.encode(),
                "new_key": new.verifier.encode(),
                "new_valid_from_size": new_record.valid_from_size,
                "old_valid_to_size": old_record.valid_to_size,
            },
        )
    )
    return Rotation(old=old_record, new=new_record, retained_file=retained, entry_seq=entry_seq)


def _write_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Writes ``data`` to ``path`` (mode 0600) via a fsynced temporary file, so a
    crash leaves the old file or the new one, never half a key. Without ``replace``
    an existing file must already hold ``data`` (a repeated rotation step)."""
    if not replace and path.exists():
        if path.read_bytes() != data:
            raise ConfigError(f"{path} exists and holds another key; move it away first")
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask must not loosen what a private key needs
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a crash
    finally:
        os.close(directory)
