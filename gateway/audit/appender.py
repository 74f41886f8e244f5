"""The audit writer's own connection: one batch, one transaction, straight to the driver.

Appending is on every call's critical path: the attempt and the decision commit before
the call is forwarded (architecture.md §9.2). Through SQLAlchemy, a transaction of two small
INSERTs took ≈ 1.3 ms of CPU in the gateway (pool checkout, PostgreSQL's pre-ping
round trip, statement building, event hooks) for ≈ 0.2 ms of sqlite3 work including
the fsync (bench/README.md). So an `Appender` checks one connection out of the
engine's pool, keeping the settings the engine applies on connect (WAL,
synchronous=FULL, synchronous_commit=on), holds it, and runs the transaction itself:
the writer lock, `batch.append_rows`, commit.

One `Appender` is used by one thread at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from gateway.audit.batch import WRITER_LOCK_KEY, PreparedRecord, append_rows, describe_error
from gateway.store.db import is_sqlite_file, sqlite_writer


class WriterBusy(Exception):
    """A never-waiting appender found another writer holding the database; nothing was
    appended."""


class CommitUnknown(Exception):
    """The connection broke while COMMIT was under way: the batch may or may not have
    been appended. Never retried (that could append it twice)."""


class Appender:
    """Appends batches to the chain in ``engine``'s database.

    ``never_wait`` (a SQLite file only): when another writer of this or another
    process holds the database, `write` raises `WriterBusy` at once instead of
    waiting. For writes made on an event loop's thread. Such a connection still
    checkpoints the WAL when it grows past SQLite's threshold: a log whose every
    append is made inline (a gateway denying every call makes no outcome records for
    the writer thread) would otherwise grow its WAL without bound.
    """

    def __init__(self, engine: Engine, origin: str, *, never_wait: bool = False) -> None:
        self._engine = engine
        self._origin = origin
        self._dialect = engine.dialect.name
        self._never_wait = never_wait and is_sqlite_file(engine)
        self._connection: PoolProxiedConnection | None = None

    def connect(self) -> None:
        """Checks the connection out now (it is otherwise taken on the first write):
        a write on an event loop must not wait for the pool."""
        self._dbapi()

    def write(self, groups: Sequence[Sequence[PreparedRecord]]) -> list[list[int]]:
        """Appends every group, each contiguously and in order, in one transaction;
        returns each group's seqs. On failure nothing of the batch exists and the
        driver's exception (or `WriterBusy`) propagates."""
        if self._dialect == "sqlite":
            return self._write_sqlite(groups)
        return self._write_postgres(groups)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._never_wait:
            connection.invalidate()  # its settings differ from the pool's others
        else:
            connection.close()  # back to the pool

    # --- SQLite ----------------------------------------------------------------------

    def _write_sqlite(self, groups: Sequence[Sequence[PreparedRecord]]) -> list[list[int]]:
        with sqlite_writer(self._engine, wait=not self._never_wait) as held:
            if self._never_wait and not held:
                raise WriterBusy("another writer of this process holds the database")
            dbapi = self._dbapi()
            try:
                dbapi.execute("BEGIN IMMEDIATE")
                results = append_rows(dbapi, self._dialect, self._origin, groups)
                dbapi.execute("COMMIT")
            except BaseException as exc:
                self._roll_back()  # SQLite's COMMIT either committed or left nothing
                if self._never_wait and _busy(exc):
                    raise WriterBusy("another process is writing the database") from exc
                raise
            return results
        raise AssertionError("unreachable: sqlite_writer does not swallow exceptions")

    # --- PostgreSQL ------------------------------------------------------------------

    def _write_postgres(self, groups: Sequence[Sequence[PreparedRecord]]) -> list[list[int]]:
        # A database restart or failover kills the kept connection, which shows only on
        # its next use. A failure before COMMIT committed nothing, so that batch is
        # safely tried once more on a fresh connection (the pool pings it first).
        for attempt in (1, 2):
            dbapi = self._dbapi()
            committing = False
            try:
                with dbapi.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
                results = append_rows(dbapi, self._dialect, self._origin, groups)
                committing = True
                dbapi.commit()
                return results
            except Exception as exc:
                broken = self._roll_back()
                if attempt == 1 and broken and not committing:
                    continue
                if broken and committing:
                    raise CommitUnknown(describe_error(exc)) from exc
                raise
        raise AssertionError("unreachable")

    def _roll_back(self) -> bool:
        """Rolls back after a failure; returns whether the connection was unusable (it
        is then dropped, and the next write checks out another). A kept connection
        left inside a transaction would hold the database's write lock for good."""
        connection = self._connection
        if connection is None:
            return True
        try:
            dbapi = connection.dbapi_connection
            if self._dialect == "sqlite":
                if dbapi.in_transaction:  # type: ignore[union-attr]
                    dbapi.execute("ROLLBACK")  # type: ignore[union-attr]
            else:
                dbapi.rollback()  # type: ignore[union-attr]
        except Exception:
            self._connection = None
            connection.invalidate()
            return True
        return False

    # --- the connection --------------------------------------------------------------

    def _dbapi(self) -> Any:
        if self._connection is None:
            connection = self._engine.raw_connection()
            if self._never_wait:
                try:
                    connection.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
                except BaseException:
                    connection.invalidate()  # never back to the pool half set up
                    raise
            self._connection = connection
        return self._connection.dbapi_connection


def _busy(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )
