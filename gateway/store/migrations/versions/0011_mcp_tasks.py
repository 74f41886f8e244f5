"""MCP tasks: approval holds answered as tasks, and task-augmented calls answered at once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the choice in tables.py: a migration must not change when it does.
TASK_KINDS = "('held', 'result')"


def upgrade() -> None:
    op.create_table(
        "mcp_tasks",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("tool", sa.Text, nullable=False),
        sa.Column("endpoint", sa.Text, nullable=True),
        sa.Column("approval_id", sa.Text, nullable=True),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("ttl_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_tasks")),
        sa.CheckConstraint(f"kind IN {TASK_KINDS}", name=op.f("ck_mcp_tasks_kind")),
    )
    op.create_index("ix_mcp_tasks_owner", "mcp_tasks", ["owner", "created_at"])
    op.create_index(op.f("ix_mcp_tasks_expires_at"), "mcp_tasks", ["expires_at"])


def downgrade() -> None:
    op.drop_table("mcp_tasks")
