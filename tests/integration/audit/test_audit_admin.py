"""`gateway audit erase` and `gateway audit rotate-key` on both databases: the log
verifies clean afterwards (database and export), an erasure is recorded and cannot be
repeated, and checkpoints before, during and after a rotation's overlap verify with
the exported keys while the old key alone is refused after its range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.audit import (
    AuditLog,
    AuditRecord,
    Checkpoint,
    Checkpointer,
    load_signing_key,
    load_signing_keys,
    parse_keys,
    read_checkpoint,
    read_entries,
    retained_key_path,
    sign_checkpoint,
)
from gateway.audit.erasure import ErasureRefused, erase_payload
from gateway.audit.export import database_source, export_log
from gateway.cli import main
from gateway.tlog.errors import CheckpointError
from gateway.tlog.source import directory_source
from gateway.tlog.verifier import VerificationReport, verify_log

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/audit"


def _calls(start: int) -> list[AuditRecord]:
    ref = f"req{start}"
    return [
        AuditRecord("call.attempt", ref, {"request_id": ref, "subject": "alice"}, subject="a"),
        AuditRecord("call.decision", ref, {"request_id": ref, "decision": {"allow": True}}),
        AuditRecord("call.outcome", ref, {"request_id": ref}),
    ]


def _config(tmp_path: Path, engine: Engine, key_file: Path) -> Path:
    config = tmp_path / "gateway.yaml"
    url = engine.url.render_as_string(hide_password=False)
    config.write_text(
        f"storage:\n  url: '{url}'\n"
        f"audit:\n  origin: '{ORIGIN}'\n  signing_key_file: '{key_file}'\n"
        "identity:\n  issuers:\n"
        "    - {issuer: 'https://idp.example', jwks_url: 'https://idp.example/jwks'}\n"
    )
    return config


async def _append(engine: Engine, key_file: Path, *batches: list[AuditRecord]) -> None:
    """Appends each batch and checkpoints after it, as a (re)started gateway would:
    with every key `load_signing_keys` finds."""
    log = AuditLog(engine, ORIGIN)
    await log.start()
    keys = load_signing_keys(key_file, ORIGIN)
    checkpointer = Checkpointer(engine, ORIGIN, keys, every_entries=10**6, every_seconds=3600)
    await checkpointer.start()
    try:
        for batch in batches:
            if batch:
                await log.append(*batch)
            await checkpointer.checkpoint_now()
    finally:
        await log.close()
        await checkpointer.close()


def _verify_both(engine: Engine, out: Path, **kwargs: object) -> VerificationReport:
    on_db = verify_log(database_source(engine), **kwargs)  # type: ignore[arg-type]
    assert on_db.ok, on_db.faults
    export_log(engine, out)
    exported = verify_log(directory_source(out), **kwargs)  # type: ignore[arg-type]
    assert exported.ok, exported.faults
    return exported


async def test_erase_keeps_the_log_verifiable(engine: Engine, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "audit-signing.pem"
    await _append(engine, key_file, _calls(0), _calls(3))
    config = str(_config(tmp_path, engine, key_file))

    argv = ["audit", "erase", "0", "--reason", "DSR-17", "--config", config]
    assert main(argv) == 0
    assert main(["audit", "erase", "4", "--reason", "DSR-18", "--config", config]) == 0
    erased, decision = read_entries(engine, start=0, stop=1)[0], read_entries(engine, start=4)[0]
    assert (erased.payload, erased.salt, erased.subject) == (None, None, None)
    assert decision.payload is None
    records = read_entries(engine, start=6)
    assert [(e.seq, e.kind, e.ref, e.payload) for e in records] == [
        (6, "erasure", "erasure:0", {"seq": 0, "reason": "DSR-17"}),
        (7, "erasure", "erasure:4", {"seq": 4, "reason": "DSR-18"}),
    ]

    # Refusals change nothing: erased already, an erasure record, unknown, no reason.
    assert main(argv) == 1
    for seq, message in [(0, "already erased"), (6, "erasure record"), (99, "does not exist")]:
        with pytest.raises(ErasureRefused, match=message):
            erase_payload(engine, ORIGIN, seq, "again")
    with pytest.raises(ErasureRefused, match="reason"):
        erase_payload(engine, ORIGIN, 1, "  ")
    assert len(read_entries(engine)) == 8

    await _append(engine, key_file, [])  # a checkpoint over the erasures
    report = _verify_both(engine, tmp_path / "export")
    assert (report.size, report.checkpoints) == (8, 3)
    payload_seqs = [json.loads(line)["seq"] for line in (tmp_path / "export/payloads.jsonl").open()]
    assert payload_seqs == [1, 2, 3, 5, 6, 7]


async def test_erasure_before_its_delete_still_verifies(engine: Engine) -> None:
    # Were the delete ever to follow in a later transaction, a crash in between leaves
    # an erasure naming a payload that is still there: harmless to the verifier.
    log = AuditLog(engine, ORIGIN)
    await log.start()
    try:
        await log.append(*_calls(0))
        await log.append(AuditRecord("erasure", "erasure:1", {"seq": 1, "reason": "x"}))
    finally:
        await log.close()
    assert verify_log(database_source(engine)).ok


async def test_rotate_key_overlap(engine: Engine, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "audit-signing.pem"
    await _append(engine, key_file, _calls(0), [_calls(3)[0]])  # checkpoints 3, 4
    old = load_signing_key(key_file, ORIGIN)
    config = str(_config(tmp_path, engine, key_file))

    assert main(["audit", "rotate-key", "--overlap", "4", "--config", config]) == 0
    new = load_signing_key(key_file, ORIGIN)
    assert new.key_id != old.key_id
    retained = retained_key_path(key_file, old.key_id)
    assert load_signing_key(retained, ORIGIN).key_id == old.key_id
    assert retained.stat().st_mode & 0o777 == 0o600
    (rotation,) = read_entries(engine, kind="key.rotation")
    assert rotation.seq == 4
    assert rotation.payload == {
        "old_key_id": old.key_id.hex(),
        "new_key_id": new.key_id.hex(),
        "old_key": old.verifier.encode(),
        "new_key": new.verifier.encode(),
        "new_valid_from_size": 4,
        "old_valid_to_size": 8,
    }

    # Restarted: size 8 is in the overlap (both sign), 12 is after it (new key only).
    await _append(engine, key_file, _calls(5), [*_calls(8), _calls(11)[0]], [])
    notes = {size: read_checkpoint(engine, size) for size in (3, 4, 8, 12)}
    signers = {size: n.note.count("\n— ") for size, n in notes.items() if n is not None}
    assert signers == {3: 1, 4: 1, 8: 2, 12: 1}
    out = tmp_path / "export"
    report = _verify_both(engine, out)
    assert report.checkpoints == 4
    keys = parse_keys((out / "keys").read_text())
    assert [(k.key_id, k.valid_from_size, k.valid_to_size) for k in keys] == [
        (old.key_id, 0, 8),
        (new.key_id, 4, None),
    ]
    # Verified with the auditor's own copy of the keys too.
    own = tmp_path / "mykeys"
    own.write_text((out / "keys").read_text())
    assert main(["audit", "verify", str(out), "--keys", str(own)]) == 0

    # The retired key alone cannot sign history after its range.
    stored = notes[12]
    assert stored is not None
    forged = sign_checkpoint(Checkpoint(ORIGIN, 12, stored.root), [old])
    (out / "checkpoints" / "12").write_text(forged)
    faults = verify_log(directory_source(out)).faults
    assert [(type(f), f.size) for f in faults] == [(CheckpointError, 12)]  # type: ignore[attr-defined]

    # A second rotation retires the new key; all three stay loadable for verification.
    assert main(["audit", "rotate-key", "--overlap", "0", "--config", config]) == 0
    assert len(load_signing_keys(key_file, ORIGIN)) == 3


async def test_rotate_key_refuses_without_a_key(engine: Engine, tmp_path: Path) -> None:
    config = str(_config(tmp_path, engine, tmp_path / "missing.pem"))
    assert main(["audit", "rotate-key", "--config", config]) == 1
    assert not (tmp_path / "missing.pem").exists()


def test_rotate_key_help_names_the_default_overlap(capsys: pytest.CaptureFixture[str]) -> None:
    # The parser does not import the rotation (it would load the database layer for
    # every command), so its help text states the default itself: this keeps it true.
    from gateway.audit.rotation import DEFAULT_OVERLAP

    with pytest.raises(SystemExit):
        main(["audit", "rotate-key", "--help"])
    assert f"(default: {DEFAULT_OVERLAP}," in " ".join(capsys.readouterr().out.split())
