"""Storage: SQLAlchemy engines, what differs between the two databases, the one schema
(Core tables) and its Alembic migrations.

Responsibilities:

- `Dialect` (`dialect`) is the one interface to what differs between SQLite and
  PostgreSQL, with one implementation each (`dialect_sqlite`, `dialect_postgres`);
  `dialect_of(engine)` picks it. The audit, executor and approvals stores call its
  hooks (the writer lock, the database clock, bulk inserts, the kept connection of
  audit appends, …) and never ask which database they are on (docs/decisions/0014).
- `create_engine` turns a configured URL into an engine with durable settings: SQLite
  in WAL mode with ``synchronous=FULL`` (a commit survives a power cut), foreign keys
  on and a busy timeout; PostgreSQL always through psycopg 3.
- `exclusive_transaction` is the single way to take the database-wide writer lock
  (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a transaction-scoped advisory lock), so
  writers in several processes serialize on the database, not on process memory. On
  SQLite, the writers of one process also queue on a lock of their own first, so a
  writer is handed the database the moment the previous commit ends instead of
  sleeping in SQLite's busy handler.
- `migrate` brings a database to the newest schema; the schema is defined once and
  created only by the versioned migrations (which, frozen as they are, keep their own
  per-database DDL). `tables` names every table and is where callers import them from;
  each is defined in the module of its concern (`tables_audit`, `tables_approvals`,
  `tables_pins`, `tables_mcp`, `tables_executor`, `tables_workflows`, `tables_limits`),
  all on the one `metadata` of `tables_metadata`.
- `shared_clock`: the database's clock, which every process on one database measures
  leases and windows on, read without a round trip between resyncs.
- `changes`: one watch per process on the database for changes other connections
  made, so idle loops sleep until there may be work (docs/decisions/0042).

Invariants kept here, in the database itself rather than in Python:

- ``audit_entries`` is append-only: UPDATE, DELETE (and TRUNCATE on PostgreSQL) raise.
- ``audit_payloads`` rows are never updated; they may be deleted (erasure).
- Hash and salt columns hold exactly 32 bytes (CHECK constraints).
- ``audit_tree_nodes`` and ``audit_checkpoints`` are append-only like the entries;
  ``audit_keys`` rows are never deleted, and only ``valid_to_size`` may be set, once.
"""

from gateway.store.db import (
    create_engine,
    dialect_of,
    exclusive_transaction,
    migrate,
    normalize_url,
)
from gateway.store.dialect import (
    UNREACHABLE,
    CommitUnknown,
    Dialect,
    KeptConnection,
    WriterBusy,
    describe_error,
    unavailable,
)
from gateway.store.tables import audit_entries, audit_payloads, metadata

__all__ = [
    "UNREACHABLE",
    "CommitUnknown",
    "Dialect",
    "KeptConnection",
    "WriterBusy",
    "audit_entries",
    "audit_payloads",
    "create_engine",
    "describe_error",
    "dialect_of",
    "exclusive_transaction",
    "metadata",
    "migrate",
    "normalize_url",
    "unavailable",
]
