"""Storage: SQLAlchemy engines, the one schema (Core tables) and its Alembic migrations.

Responsibilities:

- `create_engine` turns a configured URL into an engine with durable settings: SQLite
  in WAL mode with ``synchronous=FULL`` (a commit survives a power cut), foreign keys
  on and a busy timeout; PostgreSQL always through psycopg 3.
- `exclusive_transaction` is the single way to take the database-wide writer lock
  (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a transaction-scoped advisory lock), so
  writers in several processes serialize on the database, not on process memory. On
  SQLite, the writers of one process also queue on a lock of their own first, so a
  writer is handed the database the moment the previous commit ends instead of
  sleeping in SQLite's busy handler.
- `migrate` brings a database to the newest schema; the schema is defined once in
  `tables` and created only by the versioned migrations.

Invariants kept here, in the database itself rather than in Python:

- ``audit_entries`` is append-only: UPDATE, DELETE (and TRUNCATE on PostgreSQL) raise.
- ``audit_payloads`` rows are never updated; they may be deleted (erasure).
- Hash and salt columns hold exactly 32 bytes (CHECK constraints).
- ``audit_tree_nodes`` and ``audit_checkpoints`` are append-only like the entries;
  ``audit_keys`` rows are never deleted, and only ``valid_to_size`` may be set, once.
"""

from gateway.store.db import create_engine, exclusive_transaction, migrate, normalize_url
from gateway.store.tables import audit_entries, audit_payloads, metadata

__all__ = [
    "audit_entries",
    "audit_payloads",
    "create_engine",
    "exclusive_transaction",
    "metadata",
    "migrate",
    "normalize_url",
]
