"""The one interface to what differs between SQLite and PostgreSQL
(`gateway.store.Dialect`), its hooks on both databases. (The writer lock's exclusion,
the retry of a broken PostgreSQL connection and `CommitUnknown` are tested through
their users: tests/integration/store/test_store_db.py and audit/test_audit_sequencer.py.)"""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.store import KeptConnection, WriterBusy, dialect_of
from gateway.store.dialect_postgres import PostgresDialect
from gateway.store.dialect_sqlite import SqliteDialect
from gateway.store.tables import audit_tree_nodes

# SQLite's julianday('now') has millisecond resolution.
_RESOLUTION = timedelta(milliseconds=1)


def test_each_engine_has_the_dialect_of_its_database(engine: Engine, database_url: str) -> None:
    dialect = dialect_of(engine)
    expected = SqliteDialect if database_url.startswith("sqlite") else PostgresDialect
    assert type(dialect) is expected
    with engine.connect() as conn:
        assert dialect_of(conn) is dialect  # one instance per kind of database


def test_now_is_the_shared_clock_in_sql(engine: Engine) -> None:
    dialect = dialect_of(engine)
    with engine.connect() as conn:
        before = dialect.clock(conn)
    with engine.connect() as conn:
        now = conn.execute(sa.select(dialect.now())).scalar_one()
    with engine.connect() as conn:
        after = dialect.clock(conn)
    assert before.tzinfo is not None and after.tzinfo is not None
    # The expression and the value read the same clock, in order.
    assert before.timestamp() - _RESOLUTION.total_seconds() <= now
    assert now <= after.timestamp() + _RESOLUTION.total_seconds()


def test_insert_rows_writes_every_row_in_column_order(engine: Engine) -> None:
    rows = [(1, i, bytes([i % 256]) * 32) for i in range(3000)] + [(2, 0, b"\xff" * 32)]
    dialect = dialect_of(engine)
    with engine.begin() as conn:
        dialect.insert_rows(conn, audit_tree_nodes, rows)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(audit_tree_nodes).order_by(audit_tree_nodes.c.level, audit_tree_nodes.c.idx)
        ).all()
    assert [(r.level, r.idx, bytes(r.hash)) for r in stored] == rows


def _insert_node(dbapi: object, dialect_mark: str, index: int) -> int:
    cursor = dbapi.cursor()  # type: ignore[attr-defined]
    try:
        cursor.execute(
            "INSERT INTO audit_tree_nodes (level, idx, hash) VALUES "
            f"({dialect_mark}, {dialect_mark}, {dialect_mark})",
            (1, index, bytes(32)),
        )
    finally:
        cursor.close()
    return index


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_tree_nodes)).scalar())


def test_a_kept_transaction_commits_its_work_and_a_failed_one_leaves_nothing(
    engine: Engine,
) -> None:
    dialect = dialect_of(engine)
    kept = KeptConnection(engine, dialect)
    try:
        assert kept.transaction(1, _insert_node, dialect.mark, 0) == 0
        assert _count(engine) == 1

        def fails(dbapi: object) -> None:
            _insert_node(dbapi, dialect.mark, 1)
            raise ValueError("the work failed")

        with pytest.raises(ValueError, match="the work failed"):
            kept.transaction(1, fails)
        assert _count(engine) == 1  # rolled back, and the connection is usable again
        assert kept.transaction(1, _insert_node, dialect.mark, 2) == 2
        assert _count(engine) == 2
    finally:
        kept.close()


def test_a_never_waiting_connection_is_refused_while_another_process_writes(
    engine: Engine, database_url: str
) -> None:
    dialect = dialect_of(engine)
    kept = KeptConnection(engine, dialect, never_wait=True)
    if not dialect.writes_inline(engine):
        # Over the network writes are never made on an event loop: never_wait is moot.
        assert kept.never_wait is False
        assert dialect.never_waiting_engine(dialect.relaxed_engine(engine)) is None
        return
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WriterBusy, match="another process"):
            kept.transaction(1, _insert_node, dialect.mark, 0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert kept.transaction(1, _insert_node, dialect.mark, 0) == 0
    kept.close()
    assert _count(engine) == 1


def test_a_never_waiting_writer_is_refused_while_this_process_writes(engine: Engine) -> None:
    dialect = dialect_of(engine)
    if not dialect.writes_inline(engine):
        with dialect.process_writer(engine, wait=False) as held:
            assert held is False  # nothing queues in process: the server's locks decide
        return
    # Another thread of this process (the audit writer, a worker) is writing.
    holding, done = threading.Event(), threading.Event()

    def other_writer() -> None:
        with dialect.process_writer(engine, wait=True) as held:
            assert held
            holding.set()
            done.wait(60)

    thread = threading.Thread(target=other_writer)
    thread.start()
    kept = KeptConnection(engine, dialect, never_wait=True)
    try:
        assert holding.wait(60)
        with pytest.raises(WriterBusy, match="this process"):
            kept.transaction(1, _insert_node, dialect.mark, 0)
    finally:
        done.set()
        thread.join(60)
    assert kept.transaction(1, _insert_node, dialect.mark, 0) == 0  # free again
    kept.close()
    assert _count(engine) == 1


def test_busy_is_recognised_only_for_a_database_held_by_another_writer(engine: Engine) -> None:
    dialect = dialect_of(engine)
    locked = sqlite3.OperationalError("database is locked")
    assert dialect.is_busy(ValueError("database is locked")) is False
    assert dialect.is_busy(locked) is isinstance(dialect, SqliteDialect)
