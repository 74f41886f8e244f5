"""Engines with durable settings, the writer lock, and programmatic migrations: the
entry points, each handing what differs between the databases to the engine's
`Dialect`."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url

from gateway.errors import ConfigError
from gateway.store.dialect import Dialect
from gateway.store.dialect_postgres import PostgresDialect
from gateway.store.dialect_sqlite import SqliteDialect

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

logger = logging.getLogger(__name__)

# The advisory lock that serializes schema migrations of several processes starting at
# once (ASCII "agwmigr_").
MIGRATION_LOCK_KEY = 0x6167776D6967725F

# PostgreSQL's SQLSTATE for "permission denied" (and "must be owner of ...").
_INSUFFICIENT_PRIVILEGE = "42501"

# Alembic resolves "package:folder" through importlib.resources, so migrations are
# found inside an installed wheel with no alembic.ini on disk.
_SCRIPT_LOCATION = "gateway.store:migrations"

# The newest migration in migrations/versions (a test holds the two together). A
# database already there needs no Alembic at start: importing it and reading its
# scripts was a tenth of a second of every start.
SCHEMA_HEAD = "0014"


# Every database the gateway runs on, by SQLAlchemy dialect name.
_DIALECTS: dict[str, Dialect] = {d.name: d for d in (SqliteDialect(), PostgresDialect())}


def dialect_of(bind: Engine | Connection) -> Dialect:
    """The `Dialect` of ``bind``'s database: what differs between SQLite and PostgreSQL.
    A store asks once, for its engine."""
    return _DIALECTS[bind.dialect.name]


def normalize_url(url: str) -> URL:
    """Parses a storage URL and pins the driver: pysqlite for SQLite, psycopg 3 for
    PostgreSQL. Any other driver is a configuration error, not a surprise at runtime."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"storage URL {url!r} is not a valid database URL") from None
    backend, _, driver = parsed.drivername.partition("+")
    for dialect in _DIALECTS.values():
        if backend in dialect.schemes and driver in ("", dialect.driver):
            return dialect.pin_driver(parsed)
    raise ConfigError(
        f"storage URL scheme {parsed.drivername!r} is not supported; "
        "use sqlite:///path/to/file.db or postgresql://user:password@host/dbname"
    )


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite or PostgreSQL) with the settings the audit log's
    durability relies on (`Dialect.create_engine`). For a SQLite file, its parent
    folder is created."""
    parsed = normalize_url(url)
    return _DIALECTS[parsed.get_backend_name()].create_engine(parsed)


def exclusive_transaction(engine: Engine, lock_key: int) -> AbstractContextManager[Connection]:
    """A transaction that holds a database-wide writer lock until it commits or rolls
    back; commits when the block exits normally.

    SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock (``lock_key`` is
    not needed: there is only one), after this process's other writers of the file
    (`gateway.store.dialect_sqlite`). PostgreSQL: ``pg_advisory_xact_lock(lock_key)``,
    released by the commit, after the commit is visible to the next holder.
    Requires ``lock_key`` to fit a signed 64-bit integer.
    """
    return dialect_of(engine).exclusive_transaction(engine, lock_key)


def alembic_config() -> AlembicConfig:
    """The Alembic configuration, built in code (no alembic.ini at runtime)."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrades the database to ``revision`` (the newest by default). Idempotent, and
    safe when several processes start at once: they take turns under a writer lock.

    At the newest revision this only reads ``alembic_version``: a role without DDL
    privileges (the PostgreSQL app role of deploy/postgres/roles.sql) may call it. Such
    a role on an older schema gets a `ConfigError` naming the fix, not a bare
    "permission denied".

    A database at a revision newer than this code knows (``gateway db migrate`` of the
    next release ran during a rolling upgrade) is left as it is: migrations only add
    within a release (docs/operations.md, Upgrades), so this code still runs on it,
    and a process of the previous release restarted mid-rollout must start."""
    current = schema_revision(engine) if revision == "head" else None
    if current == SCHEMA_HEAD:
        return
    if current is not None and is_newer_schema(current):
        logger.warning(
            "the database's schema %s is newer than this release's (%s): serving on it "
            "without migrating (a rolling upgrade in progress?)",
            current,
            SCHEMA_HEAD,
        )
        return
    from alembic import command

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


def is_newer_schema(revision: str) -> bool:
    """Whether ``revision`` comes after `SCHEMA_HEAD` (revisions are numbered)."""
    return revision.isdigit() and SCHEMA_HEAD.isdigit() and int(revision) > int(SCHEMA_HEAD)


def schema_revision(engine: Engine) -> str | None:
    """The database's one Alembic revision, or None when it has none (no schema yet, an
    unreadable or branched version table): then `migrate` asks Alembic."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None
