"""Reading entries back: the chain head, seq ranges, the tail, with filters.

Readers never lock: in WAL mode (SQLite) and under MVCC (PostgreSQL) they see a
committed prefix of the chain while the sequencer appends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, Select, select

from gateway.audit.records import ChainHead
from gateway.canonical import parse_json
from gateway.store.tables import audit_entries, audit_payloads
from gateway.tlog.entries import AuditEntry, ChainRow

_E = audit_entries.c
_P = audit_payloads.c


def read_head(conn: Connection) -> ChainHead | None:
    """The newest entry on ``conn`` (inside the caller's transaction), or None."""
    row = conn.execute(select(_E.seq, _E.leaf_hash, _E.ts).order_by(_E.seq.desc()).limit(1)).first()
    if row is None:
        return None
    return ChainHead(size=row.seq + 1, leaf_hash=bytes(row.leaf_hash), ts=row.ts)


def chain_head(engine: Engine) -> ChainHead | None:
    """The newest committed entry, or None for an empty log."""
    with engine.connect() as conn:
        return read_head(conn)


def read_entries(
    engine: Engine,
    *,
    start: int = 0,
    stop: int | None = None,
    kind: str | None = None,
    ref: str | None = None,
    subject: str | None = None,
    tool: str | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Entries with ``start <= seq < stop`` matching every given filter, oldest first.

    ``subject`` and ``tool`` match the values stored beside payloads, so erased
    entries never match them.
    """
    query = _filtered(start, stop, kind, ref, subject, tool).order_by(_E.seq)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_entry(row) for row in conn.execute(query)]


def tail(
    engine: Engine,
    n: int = 20,
    *,
    kind: str | None = None,
    ref: str | None = None,
    subject: str | None = None,
    tool: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = None,
) -> list[AuditEntry]:
    """The newest ``n`` entries matching the filters, oldest first. ``since`` and
    ``until`` are leaf timestamps (``2026-11-21T10:00:00.000Z``), both inclusive;
    ``before`` keeps only entries with a smaller seq (paging backwards)."""
    if n <= 0:
        return []
    query = _filtered(0, before, kind, ref, subject, tool)
    if since is not None:
        query = query.where(_E.ts >= since)
    if until is not None:
        query = query.where(_E.ts <= until)
    query = query.order_by(_E.seq.desc()).limit(n)
    with engine.connect() as conn:
        entries = [_entry(row) for row in conn.execute(query)]
    entries.reverse()
    return entries


def iter_entries(
    engine: Engine, *, start: int = 0, stop: int | None = None, page_size: int = 1000
) -> Iterator[AuditEntry]:
    """Every entry from ``start`` (to ``stop``), in pages: for verifying a large log
    without holding it in memory or one long read transaction open."""
    if page_size <= 0:
        raise ValueError("page_size must be positive")
    position = start
    while stop is None or position < stop:
        page = read_entries(engine, start=position, stop=stop, limit=page_size)
        yield from page
        if len(page) < page_size:
            return
        position = page[-1].seq + 1


def iter_chain_rows(
    engine: Engine, *, start: int = 0, stop: int | None = None, page_size: int = 10_000
) -> Iterator[ChainRow]:
    """Every entry from ``start`` (to ``stop``) as stored bytes, for
    `gateway.tlog.chain.verify_chain_rows`: payloads are neither parsed nor
    filtered, so reading a large log costs little more than the rows themselves."""
    if page_size <= 0:
        raise ValueError("page_size must be positive")
    columns = (_E.seq, _E.ts, _E.kind, _E.ref, _E.leaf, _E.leaf_hash, _P.salt, _P.payload)
    joined = audit_entries.outerjoin(audit_payloads, _P.seq == _E.seq)
    position = start
    while stop is None or position < stop:
        query = select(*columns).select_from(joined).where(_E.seq >= position)
        if stop is not None:
            query = query.where(_E.seq < stop)
        with engine.connect() as conn:
            page = conn.execute(query.order_by(_E.seq).limit(page_size)).all()
        for seq, ts, kind, ref, leaf, hash_, salt, payload in page:
            yield ChainRow(
                seq,
                ts,
                kind,
                ref,
                bytes(leaf),
                bytes(hash_),
                None if salt is None else bytes(salt),
                None if payload is None else payload.encode("utf-8"),
            )
        if len(page) < page_size:
            return
        position = page[-1][0] + 1


def _filtered(
    start: int,
    stop: int | None,
    kind: str | None,
    ref: str | None,
    subject: str | None,
    tool: str | None,
) -> Select[Any]:
    query = select(
        _E.seq,
        _E.ts,
        _E.kind,
        _E.ref,
        _E.leaf,
        _E.leaf_hash,
        _P.salt,
        _P.payload,
        _P.subject,
        _P.tool,
    ).select_from(audit_entries.outerjoin(audit_payloads, _P.seq == _E.seq))
    if start > 0:
        query = query.where(_E.seq >= start)
    if stop is not None:
        query = query.where(_E.seq < stop)
    if kind is not None:
        query = query.where(_E.kind == kind)
    if ref is not None:
        query = query.where(_E.ref == ref)
    if subject is not None:
        query = query.where(_P.subject == subject)
    if tool is not None:
        query = query.where(_P.tool == tool)
    return query


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        kind=row.kind,
        ref=row.ref,
        leaf=bytes(row.leaf),
        leaf_hash=bytes(row.leaf_hash),
        payload=None if row.payload is None else read_payload(row.payload),
        salt=None if row.salt is None else bytes(row.salt),
        subject=row.subject,
        tool=row.tool,
        payload_jcs=None if row.payload is None else row.payload.encode("utf-8"),
    )


def read_payload(text: str | bytes) -> dict[str, Any] | None:
    """A stored payload as the object it is, or None when it is not a JSON object
    (damage the entry's check reports). Never raises: every reader of the log must
    cope with every entry in it."""
    try:
        payload = parse_json(text)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
