"""The limits' tables: the counters of fixed-window limits and the slots of
concurrency limits, shared by every replica."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, Index, Table, Text

from gateway.store.tables_metadata import metadata

# --- limits (gateway/limits/) ----------------------------------------------------------
# Policy's limits on calls (docs/decisions/0031), shared by every replica. ``key`` is
# the SHA-256 (hex) of a limit's name and scope, never the scope itself. Times are
# epoch seconds on the clock every process shares (`gateway.store.shared_clock`).

# One row per limit key: the calls counted in its current fixed window, and the row a
# concurrency limit locks while it counts its slots (the order of replicas' writes).
limit_counters = Table(
    "limit_counters",
    metadata,
    Column("key", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("window_start", Double, nullable=False),
    Column("calls", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index(None, "updated_at"),
)

# One row per call in flight under a concurrency limit, held by one process. Deleted
# when the call ends; a process that dies leaves it, and it stops counting at
# ``expires_at`` (acquired_at + limits.concurrency_lease_s).
limit_slots = Table(
    "limit_slots",
    metadata,
    Column("id", Text, primary_key=True),
    Column("key", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("holder", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("acquired_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_limit_slots_key", "key", "expires_at"),
)
