"""Pinned tool definitions: one row per tool, its approved hash and any pending change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_pins",
        sa.Column("tool", sa.Text, nullable=False),
        sa.Column("definition_hash", sa.Text, nullable=False),
        sa.Column("definition", sa.JSON, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("pending_hash", sa.Text, nullable=True),
        sa.Column("pending_definition", sa.JSON, nullable=True),
        sa.Column("first_seen", sa.Text, nullable=False),
        sa.Column("changed_at", sa.Text, nullable=False),
        sa.Column("approved_by", sa.Text, nullable=True),
        sa.Column("approved_at", sa.Text, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tool", name=op.f("pk_tool_pins")),
        sa.CheckConstraint("status IN ('pinned', 'quarantined')", name=op.f("ck_tool_pins_status")),
    )
    op.create_index(op.f("ix_tool_pins_version"), "tool_pins", ["version"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_tool_pins_version"), table_name="tool_pins")
    op.drop_table("tool_pins")
