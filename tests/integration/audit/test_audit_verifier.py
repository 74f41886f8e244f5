"""The offline verifier against a real log: an untouched export and database verify
clean; each kind of tampering (done on disk, in an export) is caught and names the
entry or checkpoint at fault. Plus the export / verify / prove / verify-receipt
commands."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.audit import (
    AuditLog,
    AuditRecord,
    Checkpoint,
    SigningKey,
    build_leaf,
    leaf_hash,
    parse_keys,
    read_entries,
    receipt_for_entry,
    sign_checkpoint,
)
from gateway.audit.export import database_source, export_log
from gateway.cli import main
from gateway.tlog.errors import (
    CallTraceError,
    ChainError,
    CheckpointError,
    ForkError,
    TruncationError,
)
from gateway.tlog.keys import AuditKey
from gateway.tlog.leaf import parse_leaf
from gateway.tlog.source import directory_source
from gateway.tlog.verifier import TRUSTED_LABEL, VerificationReport, verify_log
from tests.support.audit_logs import checkpointed_log

pytestmark = pytest.mark.anyio

ORIGIN = "test.example/audit"
SIZE = 12  # checkpoints at 4, 8 and 12


@dataclass
class Exported:
    engine: Engine
    key: SigningKey
    dir: Path

    def lines(self, name: str = "entries.jsonl") -> list[str]:
        return (self.dir / name).read_text().splitlines(keepends=True)

    def write(self, lines: list[str], name: str = "entries.jsonl") -> None:
        (self.dir / name).write_text("".join(lines))

    def verify(self, **kwargs: object) -> VerificationReport:
        return verify_log(directory_source(self.dir), **kwargs)  # type: ignore[arg-type]


def _calls(start: int) -> list[AuditRecord]:
    # One allowed call of four entries: attempt, decision, approval, outcome.
    ref = f"req{start}"
    return [
        AuditRecord("call.attempt", ref, {"request_id": ref, "tool": "t"}),
        AuditRecord("call.decision", ref, {"request_id": ref, "decision": {"allow": True}}),
        AuditRecord("approval.decision", f"ap{start}", {"status": "approved"}),
        AuditRecord("call.outcome", ref, {"request_id": ref, "approval_id": f"ap{start}"}),
    ]


@pytest.fixture
async def exported(engine: Engine, tmp_path: Path) -> AsyncIterator[Exported]:
    key = await checkpointed_log(engine, ORIGIN, [_calls(start) for start in range(0, SIZE, 4)])
    out = tmp_path / "export"
    export_log(engine, out)
    yield Exported(engine, key, out)


def only(report: VerificationReport) -> list[tuple[type, int | None]]:
    return [
        (type(f), getattr(f, "seq", None) if isinstance(f, ChainError | CallTraceError) else f.size)  # type: ignore[attr-defined]
        for f in report.faults
    ]


async def test_untouched_log_verifies_clean(exported: Exported) -> None:
    report = exported.verify()
    assert report.ok, report.faults
    assert (report.size, report.checkpoints) == (SIZE, 3)
    assert verify_log(database_source(exported.engine)).ok
    assert sorted(p.name for p in (exported.dir / "checkpoints").iterdir()) == ["12", "4", "8"]
    assert len(exported.lines("payloads.jsonl")) == SIZE
    assert main(["audit", "verify", str(exported.dir)]) == 0


async def test_edited_leaf(exported: Exported) -> None:
    lines = exported.lines()
    record = json.loads(lines[5])
    leaf = base64.b64decode(record["leaf"]).replace(b'"ref":"req4"', b'"ref":"reqX"')
    record["leaf"] = base64.b64encode(leaf).decode()
    lines[5] = json.dumps(record) + "\n"
    exported.write(lines)
    assert only(exported.verify()) == [(ChainError, 5)]
    # With the stored hash recomputed too, entry 6's prev gives it away, naming 5,
    # and the checkpoints over it no longer match.
    record["leaf_hash"] = leaf_hash(leaf).hex()
    lines[5] = json.dumps(record) + "\n"
    exported.write(lines)
    report = exported.verify()
    assert only(report) == [(ChainError, 6), (CheckpointError, 8), (CheckpointError, 12)]
    assert "entry 5 was altered" in report.faults[0].message
    # A checkpoint whose root no longer matches is a fault, never "verified".
    assert report.checkpoints == 1
    assert report.to_dict()["checkpoints_failed"] == 2


async def test_the_summary_never_counts_failing_checkpoints_as_verified(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = exported.lines()
    record = json.loads(lines[5])
    leaf = base64.b64decode(record["leaf"]).replace(b'"ref":"req4"', b'"ref":"reqX"')
    record["leaf"] = base64.b64encode(leaf).decode()
    record["leaf_hash"] = leaf_hash(leaf).hex()
    lines[5] = json.dumps(record) + "\n"
    exported.write(lines)
    assert main(["audit", "verify", str(exported.dir)]) == 1
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("FAILED (3 faults): 12 entries, 1 checkpoints verified, 2 failed")


async def test_edited_payload(exported: Exported) -> None:
    lines = exported.lines("payloads.jsonl")
    lines[3] = lines[3].replace("req0", "req9")
    exported.write(lines, "payloads.jsonl")
    report = exported.verify()
    assert only(report) == [(ChainError, 3)]
    assert "commitment" in report.faults[0].message


async def test_inserted_entry(exported: Exported) -> None:
    lines = exported.lines()
    exported.write([*lines[:5], lines[4], *lines[5:]])
    assert only(exported.verify())[0] == (ChainError, 5)


async def test_deleted_middle_entry(exported: Exported) -> None:
    lines = exported.lines()
    del lines[6]
    exported.write(lines)
    assert only(exported.verify())[0] == (ChainError, 6)


async def test_reordered_entries(exported: Exported) -> None:
    lines = exported.lines()
    lines[6], lines[7] = lines[7], lines[6]
    exported.write(lines)
    assert only(exported.verify())[0] == (ChainError, 6)


async def test_truncated_tail_against_trusted_checkpoint(
    exported: Exported, tmp_path: Path
) -> None:
    trusted = (exported.dir / "checkpoints" / "12").read_text()
    exported.write(exported.lines()[:10])
    (exported.dir / "checkpoints" / "12").unlink()
    assert exported.verify().ok  # undetectable from the log alone
    report = exported.verify(trusted=trusted)
    assert only(report) == [(TruncationError, 12)]
    assert report.faults[0].checkpoint == TRUSTED_LABEL  # type: ignore[attr-defined]
    (tmp_path / "trusted").write_text(trusted)
    argv = ["audit", "verify", str(exported.dir), "--trusted-checkpoint", str(tmp_path / "trusted")]
    assert main(argv) == 1


async def test_fork(exported: Exported) -> None:
    forked = sign_checkpoint(Checkpoint(ORIGIN, 8, bytes(32)), [exported.key])
    (exported.dir / "checkpoints" / "8.other").write_text(forked)
    report = exported.verify()
    assert (ForkError, 8) in only(report)
    assert any(
        isinstance(f, CheckpointError) and f.checkpoint == "checkpoints/8.other"
        for f in report.faults
    )
    assert report.checkpoints == 3  # 4, 8 and 12; not 8.other


async def test_forged_checkpoint_signature(exported: Exported) -> None:
    path = exported.dir / "checkpoints" / "8"
    text, _, signature = path.read_text().rpartition("— ")
    name, blob = signature.split(" ")
    key_id = base64.b64decode(blob)[:4]
    path.write_text(f"{text}— {name} {base64.b64encode(key_id + bytes(64)).decode()}\n")
    report = exported.verify()
    assert only(report) == [(CheckpointError, 8)]
    assert report.faults[0].checkpoint == "checkpoints/8"  # type: ignore[attr-defined]
    assert report.checkpoints == 2


async def test_key_used_outside_its_validity(exported: Exported) -> None:
    # The auditor's record says the key was retired at size 8: checkpoint 12, signed
    # only by it, counts as unsigned.
    (record,) = parse_keys((exported.dir / "keys").read_text())
    retired = [AuditKey(record.verifier, 0, 8)]
    assert only(exported.verify(keys=retired)) == [(CheckpointError, 12)]


async def test_outcome_without_decision(exported: Exported, engine: Engine) -> None:
    # A log whose chain is intact but whose outcome has no decision (appended as is).
    log = AuditLog(engine, ORIGIN)
    await log.start()
    try:
        await log.append(AuditRecord("call.outcome", "ghost", {"request_id": "ghost"}))
    finally:
        await log.close()
    assert only(verify_log(database_source(engine))) == [(CallTraceError, SIZE)]


async def test_an_allowed_call_without_outcome_is_reported_as_outcome_unknown(
    exported: Exported, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a kill -9 between forwarding and the outcome's commit leaves (decision 0005):
    # not a fault, but said plainly. A denied call and one held for approval have no
    # outcome by design and are not reported.
    log = AuditLog(engine, ORIGIN)
    await log.start()
    try:
        await log.append(
            AuditRecord("call.attempt", "lost", {"request_id": "lost"}),
            AuditRecord("call.decision", "lost", {"decision": {"allow": True}}),
            AuditRecord("call.decision", "denied", {"decision": {"allow": False}}),
            AuditRecord(
                "call.decision", "held", {"decision": {"allow": True, "require_approval": True}}
            ),
        )
    finally:
        await log.close()
    report = verify_log(database_source(engine))
    assert report.ok
    assert [(u.seq, u.ref) for u in report.outcome_unknown] == [(SIZE + 1, "lost")]
    assert report.to_dict()["outcome_unknown"] == [{"seq": SIZE + 1, "ref": "lost"}]
    url = str(engine.url.render_as_string(hide_password=False))
    assert main(["audit", "verify", "--db", url]) == 0
    assert "outcome unknown: call lost was allowed (entry 13)" in capsys.readouterr().out


async def test_an_outcome_saying_not_forwarded_finishes_its_call_with_or_without_entries(
    exported: Exported, engine: Engine
) -> None:
    # What the gateway writes after a COMMIT of an attempt and decision was cut off
    # (`AuditCommitUnknown`): the database kept them ("kept"), or it did not ("dropped").
    # Either way the call is known not to have run; it is no fault and not unknown. An
    # outcome without a decision that does not say so is still a fault (above).
    not_forwarded = {"status": "error", "forwarded": False}
    log = AuditLog(engine, ORIGIN)
    await log.start()
    try:
        await log.append(
            AuditRecord("call.attempt", "kept", {"request_id": "kept"}),
            AuditRecord("call.decision", "kept", {"decision": {"allow": True}}),
            AuditRecord("call.outcome", "kept", {"request_id": "kept", **not_forwarded}),
            AuditRecord("call.outcome", "dropped", {"request_id": "dropped", **not_forwarded}),
        )
    finally:
        await log.close()
    report = verify_log(database_source(engine))
    assert report.ok and not report.faults
    assert report.outcome_unknown == []


async def test_prove_and_verify_receipt(exported: Exported, tmp_path: Path) -> None:
    receipt = tmp_path / "receipt"
    receipt.write_text(receipt_for_entry(exported.engine, 5))
    leaf = tmp_path / "leaf"
    leaf.write_bytes(read_entries(exported.engine, start=5, stop=6)[0].leaf)
    key = exported.key.verifier.encode()
    assert main(["audit", "verify-receipt", str(receipt), "--key", key, "--leaf", str(leaf)]) == 0
    keys = str(exported.dir / "keys")
    assert main(["audit", "verify-receipt", str(receipt), "--keys", keys, "--leaf", str(leaf)]) == 0
    other = read_entries(exported.engine, start=6, stop=7)[0].leaf
    leaf.write_bytes(other)
    assert main(["audit", "verify-receipt", str(receipt), "--key", key, "--leaf", str(leaf)]) == 1


def test_leaf_helpers_roundtrip() -> None:
    # Sanity of the tamper helper above: a rebuilt leaf parses.
    leaf = build_leaf(
        origin=ORIGIN,
        seq=0,
        prev=bytes(32),
        ts="2026-01-01T00:00:00.000Z",
        kind="k",
        ref="r",
        commitment=bytes(32),
    )
    assert parse_leaf(leaf).ref == "r"


async def test_prove_command(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    url = exported.engine.url.render_as_string(hide_password=False)
    config.write_text(
        f"storage:\n  url: '{url}'\nidentity:\n  issuers:\n"
        "    - {issuer: 'https://idp.example', jwks_url: 'https://idp.example/jwks'}\n"
    )
    out = tmp_path / "r"
    assert main(["audit", "prove", "3", "--config", str(config), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote a receipt of entry 3 at tree size {SIZE} to {out}")
    key = exported.key.verifier.encode()
    argv = ["audit", "verify-receipt", str(out), "--key", key, "--config", str(config)]
    assert main(argv) == 0
    copy = tmp_path / "copy"
    shutil.copytree(exported.dir, copy)
    assert main(["audit", "export", "--config", str(config), "--out", str(copy)]) == 0
    assert main(["audit", "verify", str(copy), "--json"]) == 0
