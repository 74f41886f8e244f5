"""Engines, migrations and the append-only triggers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from gateway.errors import ConfigError
from gateway.store import create_engine, dialect_sqlite, metadata, migrate, normalize_url
from gateway.store.db import SCHEMA_HEAD, alembic_config, exclusive_transaction, schema_revision
from tests.support.waiting import TIMEOUT_S


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///var/gateway.db", "sqlite+pysqlite"),
        ("sqlite+pysqlite:///var/gateway.db", "sqlite+pysqlite"),
        ("postgresql://u:p@db/gw", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/gw", "postgresql+psycopg"),
    ],
)
def test_normalize_url_pins_the_driver(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql+asyncpg://u@h/db", "sqlite+aiosqlite:///x", "nonsense"]
)
def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="not"):
        normalize_url(url)


def test_postgresql_url_uses_psycopg(pg_database_url: str) -> None:
    plain = pg_database_url.replace("postgresql+psycopg://", "postgresql://")
    engine = create_engine(plain)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        engine.dispose()


def test_sqlite_engine_is_durable_and_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "gateway.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 10_000,
        }
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_transactions_cover_reads(tmp_path: Path) -> None:
    # The sqlite3 module would leave SELECTs outside any transaction; the engine
    # emits BEGIN itself, so a rollback undoes everything since the first statement.
    engine = create_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM t")
            assert conn.in_transaction()
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            conn.rollback()
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_matches_the_tables(engine: Engine) -> None:
    migrate(engine)  # a second run changes nothing
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert diff == []
    # The newest revision, whichever it is: a new migration must not edit this test.
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_schema_head_constant_is_the_newest_migration() -> None:
    # A new migration bumps SCHEMA_HEAD too, or a database at the old head would be
    # taken for current and start without the new migration.
    assert SCHEMA_HEAD == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_a_database_at_head_is_not_handed_to_alembic(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A test double: any Alembic upgrade fails this test.
    def refuse(*_args: object) -> None:
        raise AssertionError("Alembic was asked to upgrade a database at head")

    monkeypatch.setattr(command, "upgrade", refuse)
    assert schema_revision(engine) == SCHEMA_HEAD
    migrate(engine)


def test_a_database_behind_head_or_without_a_schema_is_migrated(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        assert schema_revision(engine) is None
        migrate(engine, "0005")
        assert schema_revision(engine) == "0005"
        migrate(engine)
        assert schema_revision(engine) == SCHEMA_HEAD
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def test_a_database_newer_than_this_release_is_served_as_it_is(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next release migrated during a rolling upgrade: a process of this release
    (restarted mid-rollout) starts on it without asking Alembic, which does not know
    the newer revision."""

    def refuse(*_args: object) -> None:
        raise AssertionError("Alembic was asked to upgrade a newer database")

    newer = f"{int(SCHEMA_HEAD) + 1:04d}"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
    monkeypatch.setattr(command, "upgrade", refuse)
    migrate(engine)
    assert schema_revision(engine) == newer


def test_downgrade_is_refused(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        with pytest.raises(RuntimeError, match="cannot be downgraded"):
            command.downgrade(config, "base")


def _insert_entry(conn: sa.Connection, seq: int = 0) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO audit_entries (seq, ts, kind, ref, leaf, leaf_hash) "
            "VALUES (:seq, 't', 'k', 'r', :leaf, :hash)"
        ),
        {"seq": seq, "leaf": b"{}", "hash": bytes(32)},
    )
    conn.execute(
        sa.text("INSERT INTO audit_payloads (seq, salt, payload) VALUES (:seq, :salt, '{}')"),
        {"seq": seq, "salt": bytes(32)},
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET kind = 'forged'",
        "UPDATE audit_entries SET seq = 5",
        "DELETE FROM audit_entries",
        "UPDATE audit_payloads SET payload = '{\"forged\":1}'",
    ],
)
def test_triggers_refuse_rewriting_history(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        _insert_entry(conn)
    with pytest.raises(sa.exc.DBAPIError, match=r"append-only|cannot be updated"):
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT e.seq, e.kind, p.payload FROM audit_entries e JOIN audit_payloads p "
            "ON p.seq = e.seq"
        ).one()
    assert tuple(row) == (0, "k", "{}")


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_truncate_is_refused_on_postgresql(engine: Engine) -> None:
    # Row triggers do not fire on TRUNCATE; a statement trigger covers it.
    with engine.begin() as conn:
        _insert_entry(conn)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE audit_entries CASCADE")


def test_payloads_may_be_deleted_for_erasure(engine: Engine) -> None:
    with engine.begin() as conn:
        _insert_entry(conn)
        conn.exec_driver_sql("DELETE FROM audit_payloads WHERE seq = 0")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_payloads").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_entries").scalar() == 1


@pytest.mark.parametrize(
    ("column", "value"), [("leaf_hash", b"short"), ("seq", -1)], ids=["hash-len", "negative-seq"]
)
def test_check_constraints(engine: Engine, column: str, value: object) -> None:
    row = {"seq": 0, "ts": "t", "kind": "k", "ref": "r", "leaf": b"{}", "leaf_hash": bytes(32)}
    row[column] = value
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.table("audit_entries", *map(sa.column, row)).insert(), row)


def test_payload_needs_its_entry(engine: Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO audit_payloads (seq, salt, payload) VALUES (3, :s, '{}')"),
                {"s": bytes(32)},
            )


@pytest.mark.postgres
def test_postgresql_commits_are_synchronous_even_if_configured_off(pg_database_url: str) -> None:
    name = sa.make_url(pg_database_url).database
    admin = create_engine(pg_database_url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        engine = create_engine(pg_database_url)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        finally:
            engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" RESET synchronous_commit')
        admin.dispose()


class _Queueing:
    """An in-process writer lock that says when a writer had to queue for it."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.queued = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.queued.set()
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()


def test_sqlite_writers_of_one_process_queue_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines on one file (as the audit log's and the executor's are) share one
    in-process writer lock: the second writer is handed the database when the first
    commits, without SQLite's sleep-and-retry, and neither sees "database is locked"."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    first, second = create_engine(url), create_engine(url)
    # The second engine's connections have no busy timeout: were the writers not
    # queued in process, its BEGIN IMMEDIATE would fail at once with "database is
    # locked" instead of waiting in SQLite's sleep-and-retry.
    sa.event.listen(
        second, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=0")
    )
    with first.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    shared = dialect_sqlite._writer_lock(first)
    queueing = _Queueing(shared)  # type: ignore[arg-type]
    for key, lock in list(dialect_sqlite._SQLITE_WRITERS.items()):
        if lock is shared:
            monkeypatch.setitem(dialect_sqlite._SQLITE_WRITERS, key, queueing)
    held, errors = threading.Event(), []

    def hold() -> None:
        try:
            with exclusive_transaction(first, 1) as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                held.set()
                # Commits only once the second writer queues behind it.
                assert queueing.queued.wait(TIMEOUT_S), "the second writer never queued"
        except BaseException as exc:
            errors.append(exc)

    def wait() -> None:
        try:
            assert held.wait(TIMEOUT_S)
            with exclusive_transaction(second, 2) as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold), threading.Thread(target=wait)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with second.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM t ORDER BY rowid").scalars().all() == [1, 2]
    first.dispose()
    second.dispose()
