"""The audit writer's own connection: one batch, one transaction, straight to the driver.

Appending is on every call's critical path: the attempt and the decision commit before
the call is forwarded (architecture.md §9.2). Through SQLAlchemy, a transaction of two small
INSERTs took ≈ 1.3 ms of CPU in the gateway (pool checkout, PostgreSQL's pre-ping
round trip, statement building, event hooks) for ≈ 0.2 ms of sqlite3 work including
the fsync (bench/README.md). So an `Appender` keeps one connection out of the
engine's pool (`gateway.store.KeptConnection`), keeping the settings the engine
applies on connect (WAL, synchronous=FULL, synchronous_commit=on), and runs the
transaction itself: the writer lock, `batch.append_rows`, commit. How each database
takes the lock, commits and recovers from a broken connection is its `Dialect`'s
(`kept_transaction`, docs/decisions/0012 and 0014).

One `Appender` is used by one thread at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from gateway.audit.batch import WRITER_LOCK_KEY, PreparedRecord, append_rows
from gateway.store import CommitUnknown, KeptConnection, WriterBusy, dialect_of

__all__ = ["Appender", "CommitUnknown", "WriterBusy"]


class Appender:
    """Appends batches to the chain in ``engine``'s database.

    ``never_wait`` (where the database `writes_inline`, a SQLite file): when another
    writer of this or another process holds the database, `write` raises `WriterBusy`
    at once instead of waiting. For writes made on an event loop's thread. Such a
    connection still checkpoints the WAL when it grows past SQLite's threshold: a log
    whose every append is made inline (a gateway denying every call makes no outcome
    records for the writer thread) would otherwise grow its WAL without bound.
    """

    def __init__(self, engine: Engine, origin: str, *, never_wait: bool = False) -> None:
        self._origin = origin
        self._dialect = dialect_of(engine)
        self._kept = KeptConnection(engine, self._dialect, never_wait=never_wait)

    def connect(self) -> None:
        """Checks the connection out now (it is otherwise taken on the first write):
        a write on an event loop must not wait for the pool."""
        self._kept.dbapi()

    def write(
        self,
        groups: Sequence[Sequence[PreparedRecord]],
        earlier: Sequence[Sequence[int] | None] = (),
    ) -> list[list[int]]:
        """Appends every group, each contiguously and in order, in one transaction;
        returns each group's seqs. On failure nothing of the batch exists and the
        driver's exception (or `WriterBusy`) propagates; `CommitUnknown` when the
        connection broke during COMMIT, its ``result`` each group's seqs in that
        transaction. ``earlier``: see `append_rows`."""
        return self._kept.transaction(
            WRITER_LOCK_KEY, append_rows, self._dialect, self._origin, groups, earlier
        )

    def close(self) -> None:
        self._kept.close()
