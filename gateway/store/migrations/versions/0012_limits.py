"""Limits: the counters of calls per window and the slots of concurrent calls.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limit_counters",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("window_start", sa.Double, nullable=False),
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_limit_counters")),
    )
    op.create_index(op.f("ix_limit_counters_updated_at"), "limit_counters", ["updated_at"])
    op.create_table(
        "limit_slots",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_limit_slots")),
    )
    op.create_index("ix_limit_slots_key", "limit_slots", ["key", "expires_at"])


def downgrade() -> None:
    op.drop_table("limit_slots")
    op.drop_table("limit_counters")
