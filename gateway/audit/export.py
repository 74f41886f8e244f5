"""Exporting the audit log in the database to a directory an auditor can verify
offline, and reading the database itself as a `LogSource` for the verifier.

The export directory's format, and reading it back, are `gateway.tlog.source`'s: an
auditor's verifier needs no database layer.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from gateway.audit.cosignatures import cosignature_lines, cosigned_note
from gateway.audit.keys import read_keys
from gateway.audit.reader import chain_head, iter_chain_rows
from gateway.store.tables import audit_checkpoints
from gateway.tlog.keys import format_keys
from gateway.tlog.source import (
    CHECKPOINTS_DIR,
    ENTRIES_FILE,
    KEYS_FILE,
    PAYLOADS_FILE,
    LogSource,
    origin_of,
)


@dataclass(frozen=True)
class ExportSummary:
    entries: int
    payloads: int
    checkpoints: int
    keys: int


def export_log(engine: Engine, out: Path) -> ExportSummary:
    """Writes the export of the log in ``engine`` to ``out`` (created; existing
    export files are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CHECKPOINTS_DIR).mkdir(exist_ok=True)
    # Checkpoints first, then the head: a checkpoint signed meanwhile is then still
    # covered by the exported entries (checkpoints only cover committed entries), so
    # a concurrent checkpointer cannot make a clean log look truncated.
    notes = _stored_notes(engine)
    keys = read_keys(engine)
    head = chain_head(engine)
    size = 0 if head is None else head.size
    entries = payloads = 0
    with (
        (out / ENTRIES_FILE).open("w", encoding="ascii") as entries_out,
        (out / PAYLOADS_FILE).open("w", encoding="utf-8") as payloads_out,
    ):
        for row in iter_chain_rows(engine, stop=size):
            entries_out.write(
                json.dumps(
                    {
                        "seq": row.seq,
                        "leaf": base64.b64encode(row.leaf).decode("ascii"),
                        "leaf_hash": row.leaf_hash.hex(),
                    }
                )
                + "\n"
            )
            entries += 1
            if row.payload_jcs is not None and row.salt is not None:
                # The JCS text verbatim (not re-serialized): it is the commitment's input.
                payload = row.payload_jcs.decode("utf-8")
                salt = base64.b64encode(row.salt).decode("ascii")
                record = {"seq": row.seq, "salt": salt, "payload": payload}
                payloads_out.write(json.dumps(record, ensure_ascii=False) + "\n")
                payloads += 1
    for old in (out / CHECKPOINTS_DIR).iterdir():
        old.unlink()  # a stale checkpoint from an earlier export must not linger
    for note_size, note in notes:
        (out / CHECKPOINTS_DIR / str(note_size)).write_text(note, encoding="utf-8")
    (out / KEYS_FILE).write_text(format_keys(keys), encoding="utf-8")
    return ExportSummary(entries, payloads, len(notes), len(keys))


def database_source(engine: Engine) -> LogSource:
    """The log as stored in ``engine``."""
    origin = None
    for row in iter_chain_rows(engine, stop=1):
        origin = origin_of(row.leaf)
    notes = _stored_notes(engine)
    return LogSource(
        describe=f"database {engine.url.render_as_string(hide_password=True)}",
        rows=lambda: iter_chain_rows(engine),
        checkpoints=[(f"checkpoint {size}", note) for size, note in notes],
        keys=read_keys(engine),
        origin=origin,
    )


def _stored_notes(engine: Engine) -> list[tuple[int, str]]:
    query = select(audit_checkpoints.c.size, audit_checkpoints.c.note).order_by(
        audit_checkpoints.c.size
    )
    # With the witnesses' cosignatures: the published form, which an auditor's
    # `verify --witness` counts.
    with engine.connect() as conn:
        rows = list(conn.execute(query))
        return [
            (row.size, cosigned_note(row.note, cosignature_lines(conn, row.size))) for row in rows
        ]
