"""Approvals: one row per request for a human decision (gateway/approvals).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("requester_sub", sa.Text, nullable=False),
        sa.Column("requester_iss", sa.Text, nullable=False),
        sa.Column("requester_act_chain", sa.JSON, nullable=False),
        sa.Column("tool", sa.Text, nullable=False),
        sa.Column("definition_hash", sa.Text, nullable=True),
        sa.Column("arguments_hash", sa.Text, nullable=False),
        sa.Column("arguments_display", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("approvers", sa.JSON, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text, nullable=True),
        sa.Column("decided_at", sa.Text, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.Column("channel", sa.Text, nullable=True),
        sa.Column("execution_state", sa.Text, nullable=False),
        sa.Column("execution_request_id", sa.Text, nullable=True),
        sa.Column("outcome", sa.JSON, nullable=True),
        sa.Column("request_seq", sa.BigInteger, nullable=True),
        sa.Column("decision_seq", sa.BigInteger, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')",
            name=op.f("ck_approvals_status"),
        ),
        sa.CheckConstraint(
            "execution_state IN ('none', 'running', 'done')",
            name=op.f("ck_approvals_execution_state"),
        ),
    )
    op.create_index(
        "ix_approvals_binding", "approvals", ["requester_sub", "tool", "arguments_hash", "status"]
    )
    op.create_index(op.f("ix_approvals_status"), "approvals", ["status"])
    op.create_index(op.f("ix_approvals_version"), "approvals", ["version"], unique=True)


def downgrade() -> None:
    op.drop_table("approvals")
