"""SQLite: one database file, one write lock, every writer on this host.

- Durable engine: WAL mode with ``synchronous=FULL`` (a commit survives a power cut),
  foreign keys on, a busy timeout; transactions begun by SQLAlchemy, ``BEGIN
  IMMEDIATE`` for writers.
- The writer lock is the database's own (``BEGIN IMMEDIATE``); ``lock_key`` is not
  needed, there is only one. Writers of this process first queue on a lock of their
  own for the file (`process_writer`): SQLite makes a writer that finds the database
  locked sleep and retry (1, 2, 5, 10 ms …), so a writer arriving during another's
  1 ms commit would lose 1–3 ms; the in-process lock hands over the moment the commit
  is done. Writers in other processes still serialize on SQLite's lock with the busy
  timeout.
- Commits are in-process work: writes may be made on an event loop's thread, on
  connections that never wait (busy timeout 0).
- The clock every process shares is the host's: a SQLite file is only ever used by
  processes on one host.
- Changes made through other connections (`changes`): ``PRAGMA data_version`` on a
  connection of its own moves whenever another connection, of any process, commits;
  reading it looks at the WAL index in shared memory, no transaction and no write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from gateway.store.dialect import Dialect, KeptConnection, WriterBusy, on_connect

T = TypeVar("T")

# How long a SQLite writer waits for another writer (possibly another process)
# before failing. Long enough to ride out a large batch, short enough that a stuck
# database surfaces as an error instead of a hung request.
SQLITE_BUSY_TIMEOUT_MS = 10_000

# One lock per SQLite database file in this process, taken before BEGIN IMMEDIATE (see
# the module docstring). Reentrant: a nested writer in the same thread gets SQLite's
# own "database is locked" after the busy timeout, as before, rather than a deadlock.
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()

# Execution option read by the "begin" hook of `SqliteDialect.create_engine`.
_SQLITE_IMMEDIATE = "gateway_sqlite_immediate"

# julianday('now') has millisecond resolution; 2440587.5 is the Unix epoch.
_NOW = sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", type_=sa.Double())


class SqliteDialect(Dialect):
    name = "sqlite"
    schemes = ("sqlite",)
    driver = "pysqlite"
    mark = "?"
    # In process, a statement costs microseconds; and SQLite has no data-modifying WITH.
    one_statement_writes = False

    # --- engines ----------------------------------------------------------------------

    def create_engine(self, url: URL) -> Engine:
        database = url.database or ""
        in_memory = _in_memory(database)
        kwargs: dict[str, Any] = {}
        if in_memory:
            # One shared connection: otherwise the writer thread would open its own empty
            # database. Only good for tests; a real deployment uses a file.
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # sqlite3 (Python < 3.12) would otherwise begin transactions only before DML,
            # leaving SELECTs outside the transaction and making BEGIN IMMEDIATE
            # impossible; SQLAlchemy emits BEGIN itself in _on_begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                # FULL: the WAL is fsynced on every commit; an acknowledged audit entry
                # survives power loss (NORMAL would only survive a process crash).
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get(_SQLITE_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def relaxed_engine(self, engine: Engine) -> Engine:
        """``synchronous=NORMAL``: durable across process crashes, not power loss."""
        if engine.url.database in (None, "", ":memory:"):
            return engine  # one shared in-memory database (tests): nothing on disk anyway
        # After create_engine's own hook, which insists on durable commits.
        return on_connect(self.create_engine(engine.url), "PRAGMA synchronous=NORMAL")

    def never_waiting_engine(self, relaxed: Engine) -> Engine | None:
        """Busy timeout 0, and the connection never checkpoints the WAL (the others do),
        which would wait for the disk."""
        if relaxed.url.database in (None, "", ":memory:"):
            return relaxed  # one shared in-memory connection: nobody else to wait for
        return on_connect(
            self.relaxed_engine(relaxed), "PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0"
        )

    def writes_inline(self, engine: Engine) -> bool:
        """A file: an in-memory database is one connection the writer thread shares."""
        return not _in_memory(engine.url.database or "")

    # --- the writer lock --------------------------------------------------------------

    @contextmanager
    def exclusive_transaction(self, engine: Engine, lock_key: int) -> Iterator[Connection]:
        with self.process_writer(engine, wait=True), engine.connect() as conn:
            conn.execution_options(**{_SQLITE_IMMEDIATE: True})
            with conn.begin():
                yield conn

    def write_transaction(self, engine: Engine) -> AbstractContextManager[Connection]:
        # One write lock: taken up front, as BEGIN IMMEDIATE.
        return self.exclusive_transaction(engine, 0)

    @contextmanager
    def process_writer(self, engine: Engine, *, wait: bool) -> Iterator[bool]:
        """With ``wait`` it waits as long as SQLite's own busy timeout (past it, BEGIN
        IMMEDIATE decides). ``False`` for an in-memory database (one connection,
        nobody to queue with)."""
        writers = _writer_lock(engine)
        if writers is None:
            held = False
        elif wait:
            held = writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        else:
            held = writers.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                assert writers is not None
                writers.release()

    def kept_transaction(
        self, kept: KeptConnection, lock_key: int, work: Callable[..., T], *args: Any
    ) -> T:
        with self.process_writer(kept.engine, wait=not kept.never_wait) as held:
            if kept.never_wait and not held:
                raise WriterBusy("another writer of this process holds the database")
            dbapi = kept.dbapi()
            try:
                dbapi.execute("BEGIN IMMEDIATE")
                result = work(dbapi, *args)
                dbapi.execute("COMMIT")
            except BaseException as exc:
                kept.roll_back()  # SQLite's COMMIT either committed or left nothing
                if kept.never_wait and self.is_busy(exc):
                    raise WriterBusy("another process is writing the database") from exc
                raise
            return result
        raise AssertionError("unreachable: process_writer does not swallow exceptions")

    def rollback_driver(self, dbapi_connection: Any) -> None:
        if dbapi_connection.in_transaction:
            dbapi_connection.execute("ROLLBACK")

    def never_waiting_connection(self, dbapi_connection: Any) -> None:
        # Unlike `never_waiting_engine`'s connections, it still checkpoints the WAL when
        # it grows past SQLite's threshold: a log whose every append is made inline
        # would otherwise grow its WAL without bound.
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    def is_busy(self, exc: BaseException) -> bool:
        cause = getattr(exc, "orig", None) or exc
        code = getattr(cause, "sqlite_errorcode", None)
        if code is not None:
            return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
        return isinstance(cause, sqlite3.OperationalError) and "database is locked" in str(cause)

    # --- changes made through other connections ---------------------------------------

    def announce(self, conn: Connection) -> None:
        """Nothing: `changes` sees every commit for itself."""

    async def changes(self, engine: Engine, interval_s: float) -> AsyncGenerator[None, None]:
        name = engine.url.database or ""
        if _in_memory(name):  # one connection, this process's: nobody else changes it
            yield
            await anyio.sleep_forever()
        # Read on the event loop's thread: a look at the WAL index in shared memory
        # (microseconds; a thread hop would cost more than the look). Busy timeout 0:
        # it never waits; a locked file counts as changed, the cautious side.
        watcher = sqlite3.connect(
            name,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
            uri=name.startswith("file:"),
        )
        try:
            seen: int | None = None
            while True:
                try:
                    version = watcher.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.OperationalError:
                    version = None
                if version is None or version != seen:
                    seen = version
                    yield
                await anyio.sleep(interval_s)
        finally:
            watcher.close()

    # --- SQL ------------------------------------------------------------------------

    def now(self) -> sa.ColumnElement[float]:
        return _NOW

    def clock(self, conn: Connection) -> datetime:
        return datetime.now(UTC)

    def insert_rows(
        self, conn: Connection, table: sa.Table, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        # sqlite3's executemany loops in C.
        columns = ", ".join(c.name for c in table.columns)
        marks = ", ".join(self.mark for _ in table.columns)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows)


def _in_memory(database: str) -> bool:
    return database in ("", ":memory:") or "mode=memory" in database


def _writer_lock(engine: Engine) -> threading.RLock | None:
    """The lock of the file ``engine`` writes; ``None`` for an in-memory database."""
    name = engine.url.database or ""
    if _in_memory(name):
        return None
    writers = _SQLITE_WRITERS.get(name)
    if writers is None:
        # Resolved once per spelling: two URLs naming one file share one lock.
        file = name if name.startswith("file:") else str(Path(name).expanduser().resolve())
        with _SQLITE_WRITERS_GUARD:
            writers = _SQLITE_WRITERS.setdefault(file, threading.RLock())
            _SQLITE_WRITERS[name] = writers
    return writers
