"""The approvals' table: one row per request for a human's decision."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, Table, Text

from gateway.store.tables_metadata import metadata

# --- approvals (gateway/approvals) ---------------------------------------------------
# One row per approval request. Times are fixed-width UTC text (TIME_FORMAT in
# gateway/approvals/models.py), so comparisons of the strings compare the instants on
# both dialects. ``version`` is unique and grows with every change of any row: the
# change feed of the console.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("requester_sub", Text, nullable=False),
    Column("requester_iss", Text, nullable=False),
    # The requester's identity key (gateway.types.Identity.key): what binds.
    Column("requester", Text, nullable=False),
    Column("requester_act_chain", JSON, nullable=False),
    Column("tool", Text, nullable=False),
    Column("definition_hash", Text, nullable=True),
    Column("arguments_hash", Text, nullable=False),
    Column("arguments_display", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("approvers", JSON, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("decided_by", Text, nullable=True),
    Column("decided_at", Text, nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("channel", Text, nullable=True),
    Column("execution_state", Text, nullable=False),
    Column("execution_request_id", Text, nullable=True),
    Column("outcome", JSON, nullable=True),
    Column("request_seq", BigInteger, nullable=True),
    Column("decision_seq", BigInteger, nullable=True),
    Column("version", BigInteger, nullable=False),
    CheckConstraint(
        "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')", name="status"
    ),
    CheckConstraint("execution_state IN ('none', 'running', 'done')", name="execution_state"),
    Index("ix_approvals_binding", "requester", "tool", "arguments_hash", "status"),
    Index(None, "status"),
    Index(None, "version", unique=True),
)
