"""PostgreSQL: a server over the network, row locks, advisory locks, one shared clock.

- Durable engine: psycopg 3, pre-ping (after a database restart the first write gets a
  live connection instead of failing once on a stale pooled one), and
  ``synchronous_commit`` on even where the server or database turned it off.
- The writer lock is a transaction-scoped advisory lock, ``pg_advisory_xact_lock``,
  released by the commit after the commit is visible to the next holder. Writers that
  need no database-wide lock order themselves by row locks; nothing queues in process.
- A commit is network round trips: never made on an event loop's thread; and a write of
  several parts is sent as one statement, so it costs one round trip.
- The shared clock is the server's: ``now()`` (the transaction's start) for leases and
  timers, ``clock_timestamp()`` where the moment itself matters.
- Changes made through other connections: writers that make work for idle loops
  elsewhere ``NOTIFY`` `CHANGES_CHANNEL` in their transaction (`announce`), delivered
  at the commit to every process ``LISTEN``ing on a connection of its own (`changes`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL

from gateway.store.dialect import (
    CommitUnknown,
    Dialect,
    KeptConnection,
    describe_error,
    on_connect,
)

T = TypeVar("T")

# The channel of `announce` and `changes`; the payload is empty (a hint to look).
CHANGES_CHANNEL = "gateway_changes"
# A listening connection that heard nothing for this long is asked a `SELECT 1`, so a
# connection the network dropped silently fails (and is made again) instead of
# listening to nothing until the fallback polls notice work.
LISTEN_CHECK_S = 60.0

_NOW = sa.literal_column("CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)", type_=sa.Double())


class PostgresDialect(Dialect):
    name = "postgresql"
    schemes = ("postgresql", "postgres")
    driver = "psycopg"
    mark = "%s"
    one_statement_writes = True

    # --- engines ----------------------------------------------------------------------

    def create_engine(self, url: URL) -> Engine:
        engine = sa.create_engine(url, pool_pre_ping=True)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # A server or database configured with synchronous_commit=off would
            # acknowledge commits before they are on disk. Stricter settings
            # (remote_apply, …) are left as they are.
            with dbapi_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('synchronous_commit', 'on', false) "
                    "WHERE current_setting('synchronous_commit') = 'off'"
                )
            dbapi_connection.commit()  # a rolled-back SET would be undone

        return engine

    def relaxed_engine(self, engine: Engine) -> Engine:
        """``synchronous_commit=off``: durable across a crash of the client; the server
        may lose its last few hundred milliseconds of commits on its own crash."""
        # After create_engine's own hook, which insists on durable commits.
        relaxed = self.create_engine(engine.url)
        return on_connect(relaxed, "SET synchronous_commit TO OFF", commit=True)

    def never_waiting_engine(self, relaxed: Engine) -> Engine | None:
        return None  # a commit is network round trips: never on the event loop

    def writes_inline(self, engine: Engine) -> bool:
        return False

    # --- the writer lock --------------------------------------------------------------

    @contextmanager
    def exclusive_transaction(self, engine: Engine, lock_key: int) -> Iterator[Connection]:
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            yield conn

    @contextmanager
    def write_transaction(self, engine: Engine) -> Iterator[Connection]:
        # Row locks order the writes (the fenced run row first, docs/workflows.md).
        with engine.begin() as conn:
            yield conn

    @contextmanager
    def process_writer(self, engine: Engine, *, wait: bool) -> Iterator[bool]:
        yield False  # writers queue on the server's locks only

    def kept_transaction(
        self, kept: KeptConnection, lock_key: int, work: Callable[..., T], *args: Any
    ) -> T:
        # A database restart or failover kills the kept connection, which shows only on
        # its next use. A failure before COMMIT committed nothing, so that transaction
        # is safely tried once more on a fresh connection (the pool pings it first).
        for attempt in (1, 2):
            dbapi = kept.dbapi()
            committing = False
            done: Any = None  # the work's result, for CommitUnknown
            try:
                with dbapi.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
                result = work(dbapi, *args)
                done, committing = result, True
                dbapi.commit()
                return result
            except Exception as exc:
                broken = kept.roll_back()
                if attempt == 1 and broken and not committing:
                    continue
                if broken and committing:
                    raise CommitUnknown(describe_error(exc), result=done) from exc
                raise
        raise AssertionError("unreachable")

    def rollback_driver(self, dbapi_connection: Any) -> None:
        dbapi_connection.rollback()

    def never_waiting_connection(self, dbapi_connection: Any) -> None:
        raise AssertionError("PostgreSQL writes are never made on an event loop")

    def is_busy(self, exc: BaseException) -> bool:
        return False  # a writer waits for the lock; it is never refused as busy

    # --- changes made through other connections ---------------------------------------

    def announce(self, conn: Connection) -> None:
        conn.execute(sa.text(f"SELECT pg_notify('{CHANGES_CHANNEL}', '')"))

    async def changes(self, engine: Engine, interval_s: float) -> AsyncGenerator[None, None]:
        # psycopg's own asynchronous connection: it waits on the event loop for the
        # socket, no thread held. The pool's connections are never used for LISTEN.
        import psycopg  # here: a SQLite deployment never loads it (start-up time)

        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
            yield  # listening now: whatever was announced before, the caller looks once
            while True:
                async for _ in conn.notifies(timeout=LISTEN_CHECK_S):
                    yield
                await conn.execute("SELECT 1")

    # --- SQL ------------------------------------------------------------------------

    def now(self) -> sa.ColumnElement[float]:
        return _NOW

    def clock(self, conn: Connection) -> datetime:
        moment: datetime = conn.scalar(sa.text("SELECT clock_timestamp()"))
        return moment

    def insert_rows(
        self, conn: Connection, table: sa.Table, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        # As one statement of one array per column, sent in binary (%b): psycopg's
        # executemany costs ~30 µs of this process's CPU a row, text arrays ~5 µs,
        # binary ones ~1 µs.
        columns = list(table.columns)
        arrays = ", ".join(f"%b::{c.type.compile(dialect=conn.dialect)}[]" for c in columns)
        names = ", ".join(c.name for c in columns)
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})",
            tuple(list(values) for values in zip(*rows, strict=True)),
        )
