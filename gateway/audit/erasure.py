"""Erasing one entry's payload (a data subject's request) without breaking the log.

The leaf commits to the payload by a salted hash (architecture.md §6), so deleting payload and
salt leaves nothing to recompute it from, while the leaf, the chain and the tree stay
as they were. The verifier accepts a missing payload only when a later ``erasure``
entry names its seq (`gateway.tlog.chain`): `erase_payload` appends that entry and
deletes the payload in one transaction, under the same writer lock and through the
same append code as the sequencer, so the chain keeps a single writer and there is
no moment at which the log holds a missing payload without its erasure record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from gateway.audit.batch import WRITER_LOCK_KEY, append_locked, check_log, prepare_record
from gateway.audit.reader import read_head
from gateway.audit.records import AuditRecord
from gateway.store.db import exclusive_transaction
from gateway.store.tables import audit_entries, audit_payloads
from gateway.tlog.chain import ERASURE_KIND

# Long enough for a ticket reference and a sentence; the reason is itself a payload
# that is never erased, so it should not be a place for personal data.
MAX_REASON_LENGTH = 500


class ErasureRefused(Exception):
    """The entry cannot be erased (unknown, already erased, an erasure record)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Erasure:
    """What `erase_payload` did: entry ``seq`` lost its payload; ``erasure_seq`` is the
    ``erasure`` entry recording it."""

    seq: int
    kind: str
    erasure_seq: int


def erasure_payload(seq: int, reason: str) -> dict[str, object]:
    """The payload of the ``erasure`` entry for ``seq``. ``seq`` is what the verifier
    reads (`gateway.tlog.chain`); it ignores other keys, so ``reason`` rides along."""
    return {"seq": seq, "reason": reason}


def erase_payload(engine: Engine, origin: str, seq: int, reason: str) -> Erasure:
    """Deletes the payload, salt, subject and tool of entry ``seq`` and appends an
    ``erasure`` entry naming it, in one transaction. Raises ErasureRefused for an
    unknown seq, an entry already erased or an ``erasure`` entry; ConfigError or
    AuditUnavailable (from `check_log`) for a database holding another log."""
    [done] = erase_payloads(engine, origin, [seq], reason, strict=True)
    return done


def erase_payloads(
    engine: Engine,
    origin: str,
    seqs: Iterable[int],
    reason: str,
    *,
    strict: bool = False,
    alongside: Callable[[Connection], None] | None = None,
) -> list[Erasure]:
    """`erase_payload` for several entries at once, all in one transaction with their
    ``erasure`` entries: every copy goes, or none. Entries already erased and erasure
    records are passed over, unless ``strict`` (then they are refused, as is an
    unknown seq either way). ``alongside`` runs in the same transaction, for the
    caller's own tables holding copies of the same data."""
    reason = reason.strip()
    if not reason:
        raise ErasureRefused("give a reason (it is recorded in the erasure entry)")
    if len(reason) > MAX_REASON_LENGTH:
        raise ErasureRefused(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    wanted = sorted(set(seqs))
    check_log(engine, origin)
    with exclusive_transaction(engine, WRITER_LOCK_KEY) as conn:
        # Checked under the writer lock: a concurrent erasure of the same entry waits
        # for this one and then finds the payload gone.
        head = read_head(conn)
        size = 0 if head is None else head.size
        unknown = [seq for seq in wanted if not 0 <= seq < size]
        if unknown:
            raise ErasureRefused(
                f"audit entry {unknown[0]} does not exist (the log has {size} entries)"
            )
        kinds = dict(
            conn.execute(
                select(audit_entries.c.seq, audit_entries.c.kind).where(
                    audit_entries.c.seq.in_(wanted)
                )
            ).all()
        )
        present = set(
            conn.scalars(select(audit_payloads.c.seq).where(audit_payloads.c.seq.in_(wanted)))
        )
        chosen = []
        for seq in wanted:
            if kinds[seq] == ERASURE_KIND:
                # Its payload is what makes another erasure verifiable: erasing it would
                # turn a legitimate erasure into an unexplained missing payload.
                if strict:
                    raise ErasureRefused(
                        f"audit entry {seq} is an erasure record; it cannot be erased"
                    )
            elif seq not in present:
                if strict:
                    raise ErasureRefused(f"the payload of audit entry {seq} is already erased")
            else:
                chosen.append(seq)
        prepared = [
            prepare_record(
                AuditRecord(ERASURE_KIND, f"erasure:{seq}", erasure_payload(seq, reason))
            )
            for seq in chosen
        ]
        erasure_seqs = append_locked(conn, origin, [prepared])[0] if prepared else []
        if chosen:
            conn.execute(audit_payloads.delete().where(audit_payloads.c.seq.in_(chosen)))
        if alongside is not None:
            alongside(conn)
    return [
        Erasure(seq=seq, kind=kinds[seq], erasure_seq=erasure_seq)
        for seq, erasure_seq in zip(chosen, erasure_seqs, strict=True)
    ]
