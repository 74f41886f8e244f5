"""MCP tasks passed through to upstreams that serve them: a third kind of task row.

A ``tools/call`` the caller wants run as a task, to an upstream that runs tools as
tasks, becomes the upstream's task; the gateway's row (kind ``upstream``) names it
(``upstream_task_id``; the upstream is the tool's) and records when the call's outcome
was written (``outcome_at``: once, at the first fetch of its result). See
docs/decisions/0030.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
# 0012 is another branch's; once both are merged this revises "0012" (one line).
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the choice in tables.py: a migration must not change when it does.
OLD_KINDS = "('held', 'result')"
KINDS = "('held', 'result', 'upstream')"


def upgrade() -> None:
    with op.batch_alter_table("mcp_tasks") as batch:
        batch.add_column(sa.Column("upstream_task_id", sa.Text, nullable=True))
        batch.add_column(sa.Column("outcome_at", sa.Double, nullable=True))
        batch.drop_constraint("kind", type_="check")
        batch.create_check_constraint("kind", f"kind IN {KINDS}")


def downgrade() -> None:
    op.execute("DELETE FROM mcp_tasks WHERE kind = 'upstream'")
    with op.batch_alter_table("mcp_tasks") as batch:
        batch.drop_constraint("kind", type_="check")
        batch.create_check_constraint("kind", f"kind IN {OLD_KINDS}")
        batch.drop_column("outcome_at")
        batch.drop_column("upstream_task_id")
