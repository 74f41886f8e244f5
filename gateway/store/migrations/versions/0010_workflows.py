"""Versioned workflows: published versions, channels and their history; plan review of runs.

``workflow_versions`` holds each published version, immutable (an UPDATE trigger
refuses changes) and addressed by the hash of its content; ``workflow_channels``
points each channel of a workflow at a version, and ``workflow_channel_history``
keeps every promotion (rollback is promoting an earlier version). ``runs`` gains the
review of a whole plan: ``review_status`` (``pending``, ``approved``; NULL when the
plan needed no review) and the approval it waits for.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER workflow_versions_no_update BEFORE UPDATE ON workflow_versions
    BEGIN SELECT RAISE(ABORT, 'workflow_versions is immutable: UPDATE is not allowed'); END
    """,
]
POSTGRESQL_TRIGGERS = [
    """
    CREATE FUNCTION workflow_versions_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is immutable: % is not allowed', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER workflow_versions_no_update BEFORE UPDATE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION workflow_versions_reject_change()
    """,
]


def upgrade() -> None:
    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("published_by", sa.Text, nullable=False),
        sa.Column("published_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_workflow_versions_name")),
    )
    op.create_table(
        "workflow_channels",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("workflow_id", sa.Text, nullable=False),
        sa.Column("promoted_by", sa.Text, nullable=False),
        sa.Column("promoted_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", "channel", name=op.f("pk_workflow_channels")),
    )
    op.create_table(
        "workflow_channel_history",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("workflow_id", sa.Text, nullable=False),
        sa.Column("previous_version", sa.Text, nullable=True),
        sa.Column("promoted_by", sa.Text, nullable=False),
        sa.Column("promoted_at", sa.Text, nullable=False),
        sa.Column("approval_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_channel_history")),
    )
    op.create_index(
        op.f("ix_workflow_channel_history_name"), "workflow_channel_history", ["name", "channel"]
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("review_status", sa.Text, nullable=True))
        batch.add_column(sa.Column("review_approval_id", sa.Text, nullable=True))
        batch.create_check_constraint(
            "review_status", "review_status IS NULL OR review_status IN ('pending', 'approved')"
        )
    dialect = op.get_bind().dialect.name
    triggers = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(dialect)
    if triggers is None:
        raise RuntimeError(f"no immutability trigger for database {dialect!r}")
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("review_status", type_="check")
        batch.drop_column("review_approval_id")
        batch.drop_column("review_status")
    op.drop_index(op.f("ix_workflow_channel_history_name"), table_name="workflow_channel_history")
    op.drop_table("workflow_channel_history")
    op.drop_table("workflow_channels")
    op.drop_table("workflow_versions")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS workflow_versions_reject_change()")
