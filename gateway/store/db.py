"""Engines with durable settings, the writer lock, and programmatic migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from gateway.errors import ConfigError

# How long a SQLite writer waits for another writer (possibly another process)
# before failing. Long enough to ride out a large batch, short enough that a stuck
# database surfaces as an error instead of a hung request.
SQLITE_BUSY_TIMEOUT_MS = 10_000

# The advisory lock that serializes schema migrations of several processes starting at
# once (ASCII "agwmigr_").
MIGRATION_LOCK_KEY = 0x6167776D6967725F

# One lock per SQLite database file in this process, taken before BEGIN IMMEDIATE (see
# exclusive_transaction). Reentrant: a nested writer in the same thread gets SQLite's
# own "database is locked" after the busy timeout, as before, rather than a deadlock.
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()

# Execution option read by the SQLite "begin" hook below.
_SQLITE_IMMEDIATE = "gateway_sqlite_immediate"

# PostgreSQL's SQLSTATE for "permission denied" (and "must be owner of ...").
_INSUFFICIENT_PRIVILEGE = "42501"

# Alembic resolves "package:folder" through importlib.resources, so migrations are
# found inside an installed wheel with no alembic.ini on disk.
_SCRIPT_LOCATION = "gateway.store:migrations"


def normalize_url(url: str) -> URL:
    """Parses a storage URL and pins the driver: pysqlite for SQLite, psycopg 3 for
    PostgreSQL. Any other driver is a configuration error, not a surprise at runtime."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"storage URL {url!r} is not a valid database URL") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"storage URL scheme {parsed.drivername!r} is not supported; "
        "use sqlite:///path/to/file.db or postgresql://user:password@host/dbname"
    )


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite or PostgreSQL) with the settings the audit log's
    durability relies on. For a SQLite file, its parent folder is created."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    # pre-ping: after a database restart the first append gets a live connection
    # instead of failing once on a stale pooled one.
    engine = sa.create_engine(parsed, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A server or database configured with synchronous_commit=off would acknowledge
        # commits before they are on disk. Stricter settings (remote_apply, …) are left
        # as they are.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('synchronous_commit', 'on', false) "
                "WHERE current_setting('synchronous_commit') = 'off'"
            )
        dbapi_connection.commit()  # a rolled-back SET would be undone

    return engine


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
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


@contextmanager
def exclusive_transaction(engine: Engine, lock_key: int) -> Iterator[Connection]:
    """A transaction that holds a database-wide writer lock until it commits or rolls
    back; commits when the block exits normally.

    SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock (``lock_key`` is
    not needed: there is only one). PostgreSQL: ``pg_advisory_xact_lock(lock_key)``,
    released by the commit, after the commit is visible to the next holder.
    Requires ``lock_key`` to fit a signed 64-bit integer.

    On SQLite, writers of this process (the audit writer, the executor's workers, …)
    first queue on a lock of their own for the file: SQLite makes a writer that finds
    the database locked sleep and retry (1, 2, 5, 10 ms …), so a writer arriving
    during another's 1 ms commit would lose 1–3 ms; the in-process lock hands over the
    moment the commit is done. Writers in other processes still serialize on SQLite's
    lock with the busy timeout, as before.
    """
    if engine.dialect.name == "sqlite":
        with sqlite_writer(engine), engine.connect() as conn:
            conn.execution_options(**{_SQLITE_IMMEDIATE: True})
            with conn.begin():
                yield conn
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        yield conn


@contextmanager
def sqlite_writer(engine: Engine, *, wait: bool = True) -> Iterator[bool]:
    """Holds this process's writer lock of ``engine``'s SQLite file (the one
    `exclusive_transaction` queues on); yields whether it does. With ``wait`` it waits
    as long as SQLite's own busy timeout (past it, BEGIN IMMEDIATE decides); without,
    it takes the lock only if no other writer of the process holds it. ``False`` for
    anything but a SQLite file."""
    writers = _sqlite_writer_lock(engine) if engine.dialect.name == "sqlite" else None
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


def is_sqlite_file(engine: Engine) -> bool:
    """Whether ``engine`` is a SQLite database in a file (not in memory)."""
    if engine.dialect.name != "sqlite":
        return False
    name = engine.url.database or ""
    return not (name in ("", ":memory:") or "mode=memory" in name)


def _sqlite_writer_lock(engine: Engine) -> threading.RLock | None:
    """The lock of the file ``engine`` writes; ``None`` for an in-memory database (one
    connection, nobody to queue with)."""
    name = engine.url.database or ""
    if name in ("", ":memory:") or "mode=memory" in name:
        return None
    writers = _SQLITE_WRITERS.get(name)
    if writers is None:
        # Resolved once per spelling: two URLs naming one file share one lock.
        file = name if name.startswith("file:") else str(Path(name).expanduser().resolve())
        with _SQLITE_WRITERS_GUARD:
            writers = _SQLITE_WRITERS.setdefault(file, threading.RLock())
            _SQLITE_WRITERS[name] = writers
    return writers


def alembic_config() -> AlembicConfig:
    """The Alembic configuration, built in code (no alembic.ini at runtime)."""
    config = AlembicConfig()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrades the database to ``revision`` (the newest by default). Idempotent, and
    safe when several processes start at once: they take turns under a writer lock.

    At the newest revision this only reads ``alembic_version``: a role without DDL
    privileges (the PostgreSQL app role of deploy/postgres/roles.sql) may call it. Such
    a role on an older schema gets a `ConfigError` naming the fix, not a bare
    "permission denied"."""
    config = alembic_config()
    try:
        with exclusive_transaction(engine, MIGRATION_LOCK_KEY) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
            raise
        raise ConfigError(
            f"the database role {engine.url.username!r} may not migrate the schema "
            f"({str(exc.orig).splitlines()[0]}): run `gateway db migrate` with the owner "
            "role's storage URL (docs/audit.md, PostgreSQL roles), then start again"
        ) from exc
