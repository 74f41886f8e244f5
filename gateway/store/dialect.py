"""What differs between SQLite and PostgreSQL, in one interface with two implementations.

Every difference between the two databases that the stores care about is a hook of
`Dialect`, overridden once in `gateway.store.dialect_sqlite` and once in
`gateway.store.dialect_postgres` (the pattern of DBOS's ``_sys_db.py`` with its two
subclasses). A store asks `gateway.store.db.dialect_of` once, for its engine, and calls
hooks; no module outside these three asks which database it is on
(docs/decisions/0014).

The hooks, by concern:

- engines: the connection settings of a durable engine (`create_engine`), one whose
  commits do not wait for the disk (`relaxed_engine`), one for writes on the event
  loop (`never_waiting_engine`), and whether such writes are possible at all
  (`writes_inline`);
- the writer lock: a transaction holding the database-wide writer lock
  (`exclusive_transaction`), a transaction that will write (`write_transaction`), the
  in-process queue of writers (`process_writer`), the same lock on a kept driver
  connection (`kept_transaction`, docs/decisions/0012), and recognising a database
  another writer holds (`is_busy`);
- changes: telling watchers in every process that the database changed through
  another connection (`announce`, `changes`), so idle loops wake when there is
  something to do instead of polling for it (docs/decisions/0042);
- SQL: the driver's parameter marker (`mark`), the database clock as an expression
  (`now`) and as a value (`clock`), a bulk insert (`insert_rows`), and whether a write
  of several parts is sent as one statement (`one_statement_writes`).

The hooks keep the hand-written SQL of the measured hot paths (docs/decisions/0011,
0012) exactly as it was: they organise it by database, they do not build it anew.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import PoolProxiedConnection

from gateway.errors import DatabaseUnavailable

T = TypeVar("T")


class WriterBusy(Exception):
    """A never-waiting write found another writer holding the database; nothing was
    written."""


class CommitUnknown(Exception):
    """The connection broke while COMMIT was under way: the transaction may or may not
    have committed. Never retried blindly (that could write it twice).

    ``result`` is what the transaction's work returned before its COMMIT: where that
    work put things, so that a later transaction can look whether they are there."""

    def __init__(self, message: str, *, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class Dialect(ABC):
    """One database's answers to what differs. Stateless: one instance per database
    kind, shared by every engine of that kind."""

    name: ClassVar[str]
    """SQLAlchemy's name of the dialect (``engine.dialect.name``)."""
    schemes: ClassVar[tuple[str, ...]]
    """The URL schemes (backend names) that mean this database."""
    driver: ClassVar[str]
    """The one DB-API driver used with it: pinned, so `mark` and the driver-level SQL
    are known."""
    mark: ClassVar[str]
    """The driver's parameter marker, for hand-written SQL."""
    one_statement_writes: ClassVar[bool]
    """Whether a write of several parts should be sent as one statement (data-modifying
    ``WITH`` parts): where each statement is a network round trip."""

    # --- engines ----------------------------------------------------------------------

    def pin_driver(self, url: URL) -> URL:
        return url.set(drivername=f"{self.name}+{self.driver}")

    @abstractmethod
    def create_engine(self, url: URL) -> Engine:
        """An engine whose commits are durable when acknowledged (the audit log relies
        on it). Requires ``url`` to have passed `gateway.store.db.normalize_url`."""

    @abstractmethod
    def relaxed_engine(self, engine: Engine) -> Engine:
        """A second engine on ``engine``'s database whose commits do not wait for the
        disk (durable across a crash of this process, not of the machine or server);
        ``engine`` itself where there is no disk to wait for."""

    @abstractmethod
    def never_waiting_engine(self, relaxed: Engine) -> Engine | None:
        """For writes on the event loop (`writes_inline`): like ``relaxed``, but a
        database another process is writing fails at once (`is_busy`) instead of
        waiting. ``None`` where writes are never made on the event loop."""

    @abstractmethod
    def writes_inline(self, engine: Engine) -> bool:
        """Whether a commit is in-process work short enough to be made on an event
        loop's thread (a database file), rather than network round trips or a
        connection shared with another thread."""

    # --- the writer lock --------------------------------------------------------------

    @abstractmethod
    def exclusive_transaction(
        self, engine: Engine, lock_key: int
    ) -> AbstractContextManager[Connection]:
        """A transaction holding the database-wide writer lock ``lock_key`` until it
        commits (when the block exits normally) or rolls back. Requires ``lock_key``
        to fit a signed 64-bit integer."""

    @abstractmethod
    def write_transaction(self, engine: Engine) -> AbstractContextManager[Connection]:
        """A transaction that will write and orders its writes by row locks where the
        database has them; where it has one write lock only, that lock is taken up
        front (a read that later upgrades could fail at once)."""

    @abstractmethod
    def process_writer(self, engine: Engine, *, wait: bool) -> AbstractContextManager[bool]:
        """Holds this process's place in the queue of ``engine``'s writers; yields
        whether it does. ``wait``: as long as the database's own busy timeout;
        otherwise only if no other writer of the process holds it. Yields ``False``
        where writers do not queue in process."""

    @abstractmethod
    def kept_transaction(
        self, kept: KeptConnection, lock_key: int, work: Callable[..., T], *args: Any
    ) -> T:
        """``work(dbapi_connection, *args)`` in one transaction on ``kept`` that holds
        the writer lock ``lock_key``; commits and returns its result. On failure
        nothing of it exists and the driver's exception propagates, or `WriterBusy`
        (``kept.never_wait`` and another writer holds the database), or
        `CommitUnknown` (carrying the work's result)."""

    @abstractmethod
    def rollback_driver(self, dbapi_connection: Any) -> None:
        """Rolls back the driver connection's transaction, if one is open."""

    @abstractmethod
    def never_waiting_connection(self, dbapi_connection: Any) -> None:
        """Makes a kept driver connection give up at once on a busy database (for a
        `KeptConnection` with ``never_wait``; only where `writes_inline`)."""

    @abstractmethod
    def is_busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` says another writer holds the database (nothing written)."""

    # --- changes made through other connections ---------------------------------------

    @abstractmethod
    def announce(self, conn: Connection) -> None:
        """Inside a write transaction that makes work for idle loops elsewhere (a run
        submitted, an approval changed, a schedule added): tells `changes` watchers,
        in every process, at its commit. Nothing where watchers see every commit
        for themselves."""

    @abstractmethod
    def changes(self, engine: Engine, interval_s: float) -> AsyncGenerator[None, None]:
        """Yields once at once, then whenever ``engine``'s database may have been
        changed through another connection (any process). A hint, never a promise:
        it may yield for nothing, and a change made while it was not watching (it
        raised, and is started again) is not yielded; the loops it wakes keep a
        slow poll of their own. ``interval_s``: how often it looks, where it looks."""

    # --- SQL ------------------------------------------------------------------------

    @abstractmethod
    def now(self) -> sa.ColumnElement[float]:
        """The database's current time in epoch seconds, as an SQL expression: the
        clock of leases and timers, which every process shares."""

    @abstractmethod
    def clock(self, conn: Connection) -> datetime:
        """The current time by the clock every process using this database shares (a
        timezone-aware datetime)."""

    @abstractmethod
    def insert_rows(
        self, conn: Connection, table: sa.Table, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Inserts many rows (values in the order of ``table``'s columns) at driver
        level: SQLAlchemy's per-row parameter dictionaries would cost more than the
        insert."""


class KeptConnection:
    """One DB-API connection checked out of an engine's pool and kept, for writes that
    are too frequent to pay for a checkout each (docs/decisions/0012). It keeps the
    settings the engine applies on connect. Used by one thread at a time.

    ``never_wait`` (only where the dialect `writes_inline`): a write finding the
    database held by another writer raises `WriterBusy` at once instead of waiting.
    """

    def __init__(self, engine: Engine, dialect: Dialect, *, never_wait: bool = False) -> None:
        self.engine = engine
        self.dialect = dialect
        self.never_wait = never_wait and dialect.writes_inline(engine)
        self._connection: PoolProxiedConnection | None = None

    def dbapi(self) -> Any:
        """The driver connection, checked out on first use."""
        if self._connection is None:
            connection = self.engine.raw_connection()
            if self.never_wait:
                try:
                    self.dialect.never_waiting_connection(connection.dbapi_connection)
                except BaseException:
                    connection.invalidate()  # never back to the pool half set up
                    raise
            self._connection = connection
        return self._connection.dbapi_connection

    def transaction(self, lock_key: int, work: Callable[..., T], *args: Any) -> T:
        """See `Dialect.kept_transaction`."""
        return self.dialect.kept_transaction(self, lock_key, work, *args)

    def roll_back(self) -> bool:
        """Rolls back after a failure; returns whether the connection was unusable (it
        is then dropped, and the next use checks out another). A kept connection left
        inside a transaction would hold the database's write lock for good."""
        connection = self._connection
        if connection is None:
            return True
        try:
            self.dialect.rollback_driver(connection.dbapi_connection)
        except Exception:
            self._connection = None
            connection.invalidate()
            return True
        return False

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self.never_wait:
            connection.invalidate()  # its settings differ from the pool's others
        else:
            connection.close()  # back to the pool


def on_connect(engine: Engine, *statements: str, commit: bool = False) -> Engine:
    """Runs ``statements`` on every new connection of ``engine``, after the hooks
    registered before (so these have the last word, for this engine's connections
    only). ``commit``: where a rolled-back ``SET`` would be undone. Returns ``engine``."""

    @event.listens_for(engine, "connect")
    def _run(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
        if commit:
            dbapi_connection.commit()

    return engine


# The driver errors that mean "the database cannot be reached now" (refused, shutting
# down, connection cut mid-query), as opposed to a bug or a constraint: a request that
# meets one is answered `DatabaseUnavailable` (503), not 500.
UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


def describe_error(exc: BaseException) -> str:
    """The driver's own message, first line only."""
    # SQLAlchemy's text would add the SQL and its parameters, i.e. audit payloads, to
    # an error message a client may see.
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def unavailable() -> DatabaseUnavailable:
    """A driver error of `UNREACHABLE` as the error a client is answered with. The
    driver's reason is for the gateway's log only: it can name the database's host,
    port and user."""
    return DatabaseUnavailable("the database is unavailable; nothing was done, try again later")
