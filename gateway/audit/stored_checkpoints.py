"""Signed checkpoints as stored: the rows of ``audit_checkpoints``, read back.

The checkpointer (`gateway.audit.checkpointer`) signs checkpoints and inserts these
rows; everything else reads them here: the latest checkpoint (receipts, searches, key
rotation, the API), the one of a given size (consistency proofs between two), and the
log's own signed note of one (what witnesses are sent). Read back, a checkpoint's note
carries the witnesses' stored cosignature lines (`gateway.audit.cosignatures`) after
the log's signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, select

from gateway.audit.cosignatures import cosignature_lines, cosigned_note
from gateway.store.tables import audit_checkpoints

_C = audit_checkpoints.c


@dataclass(frozen=True)
class StoredCheckpoint:
    """A row of ``audit_checkpoints``: the signed note and what it states. Read back
    (`latest_checkpoint`, `read_checkpoint`), the note carries the witnesses' stored
    cosignature lines after the log's signatures."""

    size: int
    root: bytes
    note: str
    ts: str


def latest_checkpoint(conn: Engine | Connection) -> StoredCheckpoint | None:
    """The checkpoint of the largest tree size, or None."""
    return _one(conn, select(audit_checkpoints).order_by(_C.size.desc()).limit(1))


def read_checkpoint(conn: Engine | Connection, size: int) -> StoredCheckpoint | None:
    """The checkpoint of exactly ``size``, or None."""
    return _one(conn, select(audit_checkpoints).where(_C.size == size))


def log_note(engine: Engine, size: int) -> str:
    """The log's own signed note of the stored checkpoint of ``size``, without the
    witnesses' cosignatures: what witnesses are sent. Raises LookupError if none."""
    with engine.connect() as conn:
        note = conn.execute(select(_C.note).where(_C.size == size)).scalar()
    if note is None:
        raise LookupError(f"no stored checkpoint of size {size}")
    return str(note)


def _one(conn: Engine | Connection, query: Select[Any]) -> StoredCheckpoint | None:
    if isinstance(conn, Engine):
        with conn.connect() as own:
            return _one(own, query)
    row = conn.execute(query).first()
    if row is None:
        return None
    note = cosigned_note(row.note, cosignature_lines(conn, row.size))
    return StoredCheckpoint(row.size, bytes(row.root), note, row.ts)
