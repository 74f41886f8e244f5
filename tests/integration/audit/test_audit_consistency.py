"""Consistency proofs between stored checkpoints, and the verifier's witness quorum, on
SQLite and PostgreSQL: proofs that verify offline, clear errors for bad ranges and
missing checkpoints, cosignatures carried by exports, and an export whose checkpoint
lacks (or fakes) the named witnesses' cosignatures reported as not witnessed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, Checkpointer, SigningKey
from gateway.audit.consistency import consistency_between
from gateway.audit.cosignatures import store_cosignature
from gateway.audit.export import export_log
from gateway.audit.stored_checkpoints import latest_checkpoint, log_note, read_checkpoint
from gateway.cli import main
from gateway.errors import BadRequest
from gateway.store import create_engine, migrate
from gateway.tlog.consistency import verify_consistency_proof
from gateway.tlog.cosignature import Cosignature, WitnessKey, cosign
from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.keys import AuditKey, format_keys
from gateway.tlog.note import parse_note
from gateway.tlog.source import directory_source
from gateway.tlog.verifier import verify_log
from tests.support.audit_logs import checkpointed_log

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/consistency"


def batches(*sizes: int) -> list[list[AuditRecord]]:
    out, n = [], 0
    for size in sizes:
        out.append([AuditRecord("call.attempt", f"r{n + i}", {"i": n + i}) for i in range(size)])
        n += size
    return out


async def test_proofs_between_any_two_checkpoints_verify(engine: Engine) -> None:
    key = await checkpointed_log(engine, ORIGIN, batches(3, 4, 6))  # checkpoints 3, 7, 13
    keys = [AuditKey(key.verifier, 0, None)]
    for old, new in [(3, 7), (3, 13), (7, 13), (7, 7)]:
        result = consistency_between(engine, old, new)
        trusted = read_checkpoint(engine, old).note
        verified = verify_consistency_proof(result.text, trusted, keys=keys, origin=ORIGIN)
        assert (verified[0].size, verified[1].size) == (old, new)


async def test_bad_ranges_and_missing_checkpoints_are_clear_errors(engine: Engine) -> None:
    await checkpointed_log(engine, ORIGIN, batches(3, 4))
    with pytest.raises(BadRequest, match="at least 1"):
        consistency_between(engine, 0, 7)
    with pytest.raises(BadRequest, match="larger than to"):
        consistency_between(engine, 7, 3)
    with pytest.raises(ProofUnavailable, match="no checkpoint of tree size 5"):
        consistency_between(engine, 3, 5)


def witness(name: str) -> tuple[WitnessKey, ed25519.Ed25519PrivateKey]:
    private = ed25519.Ed25519PrivateKey.generate()
    return WitnessKey(name, private.public_key().public_bytes_raw()), private


async def test_export_carries_cosignatures_and_the_verifier_counts_them(
    engine: Engine, tmp_path: Path
) -> None:
    key = await checkpointed_log(engine, ORIGIN, batches(5))
    keys = [AuditKey(key.verifier, 0, None)]
    a, b = witness("w.test/a"), witness("w.test/b")
    text = parse_note(log_note(engine, 5)).text
    for public, private in (a, b):
        line = cosign(text, public, private, 1_800_000_000).line()
        assert store_cosignature(engine, 5, Cosignature(public, 1_800_000_000, line))
    assert not store_cosignature(engine, 5, Cosignature(a[0], 1, "ignored"))  # first stands
    assert latest_checkpoint(engine).note.count("\n— w.test/") == 2
    export_log(engine, tmp_path / "export")
    source = directory_source(tmp_path / "export")
    report = verify_log(source, keys=keys, witnesses=[a[0], b[0]], min_cosignatures=2)
    assert report.ok, report.to_dict()
    assert report.witnessed == ["w.test/a", "w.test/b"]
    stranger = witness("w.test/c")[0]
    report = verify_log(source, keys=keys, witnesses=[a[0], stranger], min_cosignatures=2)
    assert [f.code for f in report.faults] == ["audit_not_witnessed"]
    # A cosignature line under a named witness's key that does not verify.
    impostor = WitnessKey("w.test/a", b[0].public_key)  # b's key in a's name
    report = verify_log(source, keys=keys, witnesses=[impostor], min_cosignatures=1)
    assert [f.code for f in report.faults] == ["audit_not_witnessed"]


async def _log_with_key(engine: Engine, key: SigningKey, tag: str, sizes: tuple[int, ...]) -> None:
    log = AuditLog(engine, ORIGIN)
    await log.start()
    checkpointer = Checkpointer(engine, ORIGIN, [key], every_entries=10**6, every_seconds=3600)
    await checkpointer.start()
    try:
        for batch in batches(*sizes):
            await log.append(*[AuditRecord(r.kind, tag + r.ref, r.payload) for r in batch])
            await checkpointer.checkpoint_now()
    finally:
        await log.close()
        await checkpointer.close()


async def test_verify_consistency_command_against_two_checkpoints(
    engine: Engine, tmp_path: Path
) -> None:
    key = SigningKey.generate(ORIGIN)
    await _log_with_key(engine, key, "", (3, 4))
    fork = create_engine(f"sqlite:///{tmp_path / 'fork.db'}")
    migrate(fork)
    await _log_with_key(fork, key, "fork", (3, 4))
    files = {
        "keys": format_keys([AuditKey(key.verifier, 0, None)]),
        "proof": consistency_between(engine, 3, 7).text,
        "old": read_checkpoint(engine, 3).note,
        "new": read_checkpoint(engine, 7).note,
        "fork": read_checkpoint(fork, 7).note,
        "fork3": read_checkpoint(fork, 3).note,
    }
    fork.dispose()
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    def verify(*extra: str, trusted: str = "old") -> int:
        return main(
            [
                *("audit", "verify", "--consistency", str(tmp_path / "proof")),
                *("--keys", str(tmp_path / "keys")),
                *("--trusted-checkpoint", str(tmp_path / trusted), *extra),
            ]
        )

    assert verify() == 0
    assert verify("--checkpoint", str(tmp_path / "new")) == 0
    assert verify("--checkpoint", str(tmp_path / "fork")) == 1  # same size, other root
    assert verify("--checkpoint", str(tmp_path / "old")) == 1  # another size
    # A proof from the honest log does not lead from a checkpoint of another history.
    assert verify(trusted="fork3") == 1
