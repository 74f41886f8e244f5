"""One batch, one transaction: extending the chain in the database.

`prepare_record` does everything that does not depend on the position in the chain
(validation, canonical payload, salt, commitment); `write_batch` does the rest under
the database-wide writer lock. The sequencer decides what goes into a batch; this
module decides how a batch becomes entries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.reader import read_head
from gateway.audit.records import KIND_PATTERN, AuditRecord
from gateway.errors import AuditUnavailable, ConfigError
from gateway.store import Dialect, dialect_of, exclusive_transaction
from gateway.store.dialect import describe_error
from gateway.store.tables import audit_entries, audit_payloads
from gateway.tlog.errors import LeafFormatError
from gateway.tlog.leaf import (
    SALT_SIZE,
    ZERO_HASH,
    build_leaf,
    canonical_json,
    commitment_of_jcs,
    format_ts,
    leaf_hash,
    parse_leaf,
)

# The PostgreSQL advisory lock every audit writer of a database takes (ASCII
# "agwaudit"). Never change it: processes of two versions must exclude each other.
WRITER_LOCK_KEY = 0x6167776175646974


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A validated record with its canonical payload, salt and commitment."""

    kind: str
    ref: str
    payload_jcs: bytes
    salt: bytes
    commitment: bytes
    subject: str | None
    tool: str | None


def prepare_record(record: AuditRecord) -> PreparedRecord:
    """Validates ``record`` and commits to its payload with a fresh random salt.
    Raises TypeError or ValueError for a record that cannot be appended."""
    # Called in the appending caller, so one malformed record fails its own caller
    # only and never the batch it would have shared with others.
    if not isinstance(record, AuditRecord):
        raise TypeError(f"expected an AuditRecord, got {type(record).__name__}")
    if not isinstance(record.kind, str) or not KIND_PATTERN.fullmatch(record.kind):
        raise ValueError(f"audit kind {record.kind!r} is not a dotted lower-case name")
    if not isinstance(record.ref, str):
        raise ValueError(f"audit ref must be a string, got {type(record.ref).__name__}")
    if not isinstance(record.payload, dict):
        raise ValueError("audit payload must be a JSON object (a dict)")
    for name in ("subject", "tool"):
        value = getattr(record, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"audit {name} must be a string or None")
    payload_jcs = canonical_json(record.payload)
    # One system call per record. Drawing 128 salts at once and splitting them gained
    # nothing measurable: the kernel's cost is per byte generated (docs/decisions/0026).
    salt = os.urandom(SALT_SIZE)
    return PreparedRecord(
        kind=record.kind,
        ref=record.ref,
        payload_jcs=payload_jcs,
        salt=salt,
        commitment=commitment_of_jcs(salt, payload_jcs),
        subject=record.subject,
        tool=record.tool,
    )


def write_batch(
    engine: Engine, origin: str, groups: Sequence[Sequence[PreparedRecord]]
) -> list[list[int]]:
    """Appends every group, each contiguously and in order, in one transaction; returns
    each group's seqs. On any failure the transaction is rolled back and the
    database's exception propagates: nothing of the batch exists."""
    with exclusive_transaction(engine, WRITER_LOCK_KEY) as conn:
        return append_locked(conn, origin, groups)


def append_locked(
    conn: Connection, origin: str, groups: Sequence[Sequence[PreparedRecord]]
) -> list[list[int]]:
    """`write_batch` inside a transaction the caller opened with
    ``exclusive_transaction(engine, WRITER_LOCK_KEY)``: for writes that must commit
    together with their entries (an erasure deletes a payload in the same
    transaction). The caller commits; nothing is acknowledged before that."""
    return append_rows(conn.connection.dbapi_connection, dialect_of(conn), origin, groups)


def append_rows(
    dbapi_connection: Any,
    dialect: Dialect,
    origin: str,
    groups: Sequence[Sequence[PreparedRecord]],
    earlier: Sequence[Sequence[int] | None] = (),
) -> list[list[int]]:
    """The chain extension itself, on a DB-API connection of ``dialect`` in a
    transaction that holds the writer lock: reads the head, builds the leaves, inserts
    entries and payloads. Returns each group's seqs. Every writer
    (`gateway.audit.appender`, erasures, the CLI) appends through here.

    ``earlier[i]``, where given, are the seqs group ``i`` was given by a transaction
    whose COMMIT was cut off (`CommitUnknown`): if the log holds the group there, it is
    not appended again and those seqs are its result."""
    statements = _statements(dialect.mark)
    cursor = dbapi_connection.cursor()
    try:
        # Read under the lock, in this transaction: the head cannot move until commit,
        # and a cut-off transaction that held the lock has ended one way or the other.
        cursor.execute(statements.head)
        head = cursor.fetchone()
        seq = 0 if head is None else head[0] + 1
        prev = ZERO_HASH if head is None else bytes(head[1])
        ts = format_ts(datetime.now(UTC))
        if head is not None and head[2] > ts:
            ts = head[2]  # keep ts non-decreasing when hosts' clocks disagree a little
        entry_rows: list[tuple[Any, ...]] = []
        payload_rows: list[tuple[Any, ...]] = []
        results: list[list[int]] = []
        for index, group in enumerate(groups):
            placed = earlier[index] if index < len(earlier) else None
            if placed and _in_log(cursor, statements, group, placed):
                results.append(list(placed))
                continue
            seqs = []
            for record in group:
                leaf = build_leaf(
                    origin=origin,
                    seq=seq,
                    prev=prev,
                    ts=ts,
                    kind=record.kind,
                    ref=record.ref,
                    commitment=record.commitment,
                )
                prev = leaf_hash(leaf)
                entry_rows.append((seq, ts, record.kind, record.ref, leaf, prev))
                payload_rows.append(
                    (
                        seq,
                        record.salt,
                        record.payload_jcs.decode("utf-8"),
                        record.subject,
                        record.tool,
                    )
                )
                seqs.append(seq)
                seq += 1
            results.append(seqs)
        _insert(cursor, statements.insert_entry, entry_rows)
        _insert(cursor, statements.insert_payload, payload_rows)
    finally:
        cursor.close()
    return results


def _in_log(
    cursor: Any, statements: _Statements, group: Sequence[PreparedRecord], seqs: Sequence[int]
) -> bool:
    """Whether the log holds ``group`` at ``seqs``. A leaf commits to its record's
    payload with a salt drawn for that record alone, so a leaf there with the same
    commitment is that record, not another one like it."""
    if len(seqs) != len(group):
        return False
    cursor.execute(statements.leaves, (seqs[0], seqs[-1]))
    leaves = {row[0]: bytes(row[1]) for row in cursor.fetchall()}
    for seq, record in zip(seqs, group, strict=True):
        leaf = leaves.get(seq)
        if leaf is None:
            return False
        try:
            parsed = parse_leaf(leaf)
        except LeafFormatError:
            return False
        if (parsed.commitment, parsed.kind, parsed.ref) != (
            record.commitment,
            record.kind,
            record.ref,
        ):
            return False
    return True


# At most this many rows per INSERT statement: a batch's rows of each table go in as
# one multi-row statement (several for a batch of more). Not `executemany`: the driver
# steps it row by row, and the sqlite3 module releases and takes back the GIL around
# every step. In the writer thread, beside an event loop that wants the GIL all the
# time, each take-back waited for the loop to let go (docs/decisions/0046).
ROWS_PER_INSERT = 64


def _insert(cursor: Any, statement: _Insert, rows: Sequence[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        sql = _rows_statement(statement, len(chunk))
        cursor.execute(sql, [value for row in chunk for value in row])


@dataclass(frozen=True)
class _Insert:
    """``INSERT INTO table (columns) VALUES (marks), (marks), …`` for any row count."""

    head: str  # up to and including VALUES
    row: str  # one row's marks, in parentheses


@cache
def _rows_statement(insert: _Insert, count: int) -> str:
    # Built once per row count, at most ROWS_PER_INSERT texts per table; the sizes a
    # few calls' records make are the ones that recur, and stay in the driver's
    # statement cache.
    return insert.head + ", ".join([insert.row] * count)


@dataclass(frozen=True)
class _Statements:
    head: str
    leaves: str
    insert_entry: _Insert
    insert_payload: _Insert


@cache
def _statements(mark: str) -> _Statements:
    """The writer's SQL in a driver's parameter style (`Dialect.mark`), built once.
    Hand-written, not built with SQLAlchemy Core: this runs for every call, and
    building and compiling a Core statement cost more than executing it
    (bench/README.md)."""
    entries, payloads = audit_entries.name, audit_payloads.name
    return _Statements(
        head=f"SELECT seq, leaf_hash, ts FROM {entries} ORDER BY seq DESC LIMIT 1",
        leaves=f"SELECT seq, leaf FROM {entries} WHERE seq BETWEEN {mark} AND {mark}",
        insert_entry=_Insert(
            f"INSERT INTO {entries} (seq, ts, kind, ref, leaf, leaf_hash) VALUES ",
            f"({', '.join([mark] * 6)})",
        ),
        insert_payload=_Insert(
            f"INSERT INTO {payloads} (seq, salt, payload, subject, tool) VALUES ",
            f"({', '.join([mark] * 5)})",
        ),
    )


def check_log(engine: Engine, origin: str) -> None:
    """Checks before the first append that the database is reachable and migrated and
    that the log it holds (if any) is log ``origin``. Raises AuditUnavailable or
    ConfigError with what to do about it."""
    database = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            head = read_head(conn)
            leaf = None
            if head is not None:
                query = select(audit_entries.c.leaf).where(audit_entries.c.seq == head.size - 1)
                leaf = bytes(conn.execute(query).scalar_one())
    except SQLAlchemyError as exc:
        raise AuditUnavailable(
            f"cannot read the audit log in {database} ({describe_error(exc)}); "
            "is the database reachable and migrated (gateway.store.migrate)?"
        ) from exc
    if leaf is None:
        return
    try:
        log = parse_leaf(leaf).log
    except LeafFormatError as exc:
        raise AuditUnavailable(
            f"the newest audit entry in {database} is not a valid leaf ({exc.message}); "
            "run the audit verifier before appending"
        ) from exc
    if log != origin:
        raise ConfigError(
            f"the audit log in {database} has origin {log!r}, but audit.origin is "
            f"{origin!r}; one database holds one log: fix audit.origin or use another "
            "database"
        )
