"""The audit writer's own connection: one batch, one transaction, straight to the driver.

Appending is on every call's critical path: the attempt and the decision commit before
the call is forwarded (DESIGN §9.2). Through SQLAlchemy, a transaction of two small
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

from gateway.audit.batch import WRITER_LOCK_KEY, PreparedRecord, append_rows
from gateway.store.db import sqlite_writer


class WriterBusy(Exception):
    """A never-waiting appender found another writer holding the database; nothing was
    appended."""


class Appender:
    """Appends batches to the chain in ``engine``'s database.

    ``never_wait`` (a SQLite file only): when another writer of this or another
    process holds the database, `write` raises `WriterBusy` at once instead of
    waiting, and the connection leaves WAL checkpoints (which wait for the disk) to
    the others. For writes made on an event loop's thread.
    """

    def __init__(self, engine: Engine, origin: str, *, never_wait: bool = False) -> None:
        self._engine = engine
        self._origin = origin
        self._dialect = engine.dialect.name
        self._never_wait = never_wait and self._dialect == "sqlite" and not _in_memory(engine)
        self._connection: PoolProxiedConnection | None = None

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
            except sqlite3.OperationalError as exc:
                if self._never_wait and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    raise WriterBusy("another process is writing the database") from exc
                raise
            try:
                results = append_rows(dbapi, self._dialect, self._origin, groups)
                dbapi.execute("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    dbapi.execute("ROLLBACK")
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
            except Exception:
                broken = self._roll_back()
                if attempt == 1 and broken and not committing:
                    continue
                raise
        raise AssertionError("unreachable")

    def _roll_back(self) -> bool:
        """Rolls back after a failure; returns whether the connection was unusable (it
        is then dropped, and the next write checks out another)."""
        connection = self._connection
        if connection is None:
            return True
        try:
            connection.dbapi_connection.rollback()  # type: ignore[union-attr]
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
                cursor = connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute("PRAGMA busy_timeout=0")
                    cursor.execute("PRAGMA wal_autocheckpoint=0")
                finally:
                    cursor.close()
            self._connection = connection
        return self._connection.dbapi_connection


def _in_memory(engine: Engine) -> bool:
    database = engine.url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database
