"""Witnesses' cosignatures of stored checkpoints: the ``audit_cosignatures`` table.

A witness answers an add-checkpoint request with a cosignature line
(`gateway.audit.witnessing`); it is stored here, once per (tree size, witness key),
and every published copy of that checkpoint carries it: `cosigned_note` appends the
stored lines to the log's signed note, which is the note a C2SP signed-note verifier
reads (lines of unknown keys are ignored, so a verifier who trusts no witness sees
the log's note as before).

Rows are only inserted (append-only triggers); a second cosignature of the same
size by the same witness (a resubmission) is dropped, the first one stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from gateway.store.tables import audit_cosignatures
from gateway.tlog.cosignature import Cosignature
from gateway.tlog.leaf import format_ts

_C = audit_cosignatures.c


def store_cosignature(engine: Engine, size: int, cosignature: Cosignature) -> bool:
    """Records a verified cosignature of the checkpoint of ``size``; False when this
    witness key's cosignature of that size is already stored."""
    row = {
        "size": size,
        "witness": cosignature.witness.name,
        "key_id": cosignature.witness.key_id,
        "timestamp": cosignature.timestamp,
        "line": cosignature.line,
        "ts": format_ts(datetime.now(UTC)),
    }
    try:
        with engine.begin() as conn:
            conn.execute(audit_cosignatures.insert(), row)
    except IntegrityError:
        return False  # the first cosignature of this size stands
    return True


def cosignature_lines(conn: Engine | Connection, size: int) -> list[str]:
    """The stored cosignature lines of the checkpoint of ``size``, in a stable order."""
    query = select(_C.line).where(_C.size == size).order_by(_C.witness, _C.key_id)
    if isinstance(conn, Engine):
        with conn.connect() as own:
            return list(own.execute(query).scalars())
    return list(conn.execute(query).scalars())


def cosigned_sizes(engine: Engine) -> dict[tuple[str, bytes], int]:
    """The largest tree size each witness key cosigned, by (name, key ID)."""
    query = select(_C.witness, _C.key_id, func.max(_C.size)).group_by(_C.witness, _C.key_id)
    with engine.connect() as conn:
        return {(name, bytes(key_id)): int(size) for name, key_id, size in conn.execute(query)}


def cosigned_note(note: str, lines: Sequence[str]) -> str:
    """The log's signed note with the witnesses' cosignature lines appended (each line
    ends in a newline, as signed-note requires)."""
    return note + "".join(lines)
