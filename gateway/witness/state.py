"""The witness's view of each log: the latest cosigned tree head, by origin, in SQLite.

tlog-witness requires checking the old size against the stored one and storing the
new head atomically (otherwise two concurrent requests could roll the view back), and
storing it before answering. `WitnessState.advance` does both in one ``BEGIN
IMMEDIATE`` transaction of SQLite: the caller's check runs between the read and the
write, and a check that raises writes nothing. A plain stdlib ``sqlite3`` file: the
witness shares no code with the gateway's database layer, by design.

Requests refused for inconsistency (a fork, a rolled-back log) are kept in
``refusals`` with their body: they are signed by the log's key, so they are evidence
of its misbehaviour (tlog-witness allows a witness to keep them).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class TreeHead:
    """What the witness last cosigned of one log."""

    size: int
    root: bytes


class WitnessState:
    """The witness's SQLite state file. Thread-safe; one connection per call."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        # One process-local lock as well: SQLite's lock would serialize the writers,
        # this also keeps two threads of one process from contending on it.
        self._lock = threading.Lock()
        with closing(self._connect()) as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # the view must survive a power cut
        return conn

    def head(self, origin: str) -> TreeHead | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT size, root FROM logs WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else TreeHead(int(row[0]), bytes(row[1]))

    def advance(self, origin: str, new: TreeHead, check: Callable[[TreeHead | None], None]) -> None:
        """Calls ``check(current head or None)`` and, if it returns, stores ``new`` as
        the head of ``origin``, all in one write transaction. ``new`` must not be
        smaller than the current head (the check should have said so)."""
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    "SELECT size, root FROM logs WHERE origin = ?", (origin,)
                ).fetchone()
                current = None if row is None else TreeHead(int(row[0]), bytes(row[1]))
                check(current)
                if current is not None and new.size < current.size:
                    raise RuntimeError("the witness's view of a log never goes backwards")
                conn.execute(
                    "INSERT INTO logs (origin, size, root, updated) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, "
                    "root = excluded.root, updated = excluded.updated",
                    (origin, new.size, new.root, time.time()),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

    def record_refusal(self, origin: str, status: int, reason: str, body: str) -> None:
        with self._lock, closing(self._connect()) as conn:
            conn.execute(
                "INSERT INTO refusals (origin, status, reason, body, at) VALUES (?, ?, ?, ?, ?)",
                (origin, status, reason, body, time.time()),
            )

    def refusals(self, origin: str) -> list[tuple[int, str]]:
        """(status, reason) of every refused request for ``origin``, oldest first."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT status, reason FROM refusals WHERE origin = ? ORDER BY id", (origin,)
            ).fetchall()
        return [(int(status), str(reason)) for status, reason in rows]
