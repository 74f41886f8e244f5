"""The executor's durable state: runs, their steps, every step attempt, and schedules.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the choices in tables.py: a migration must not change when it does.
RUN_STATUSES = "('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')"
STEP_STATUSES = "('pending', 'running', 'waiting', 'succeeded', 'failed', 'skipped', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("plan_hash", sa.Text, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("principal", sa.JSON, nullable=False),
        sa.Column("submitted_by", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("schedule_id", sa.Text, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double, nullable=True),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Column("deadline_at", sa.Double, nullable=True),
        sa.Column("wake_at", sa.Double, nullable=True),
        sa.Column("lease_owner", sa.Text, nullable=True),
        sa.Column("lease_expires_at", sa.Double, nullable=True),
        sa.Column("fencing_token", sa.BigInteger, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        sa.Column("max_tool_calls", sa.Integer, nullable=False),
        sa.Column("error", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("submitted_by", "idempotency_key", name=op.f("uq_runs_submitted_by")),
        sa.CheckConstraint(f"status IN {RUN_STATUSES}", name=op.f("ck_runs_status")),
    )
    op.create_index("ix_runs_claim", "runs", ["status", "wake_at"])
    op.create_index(op.f("ix_runs_created_at"), "runs", ["created_at"])

    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("arguments", sa.JSON, nullable=True),
        sa.Column("output", sa.JSON, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("decision", sa.JSON, nullable=True),
        sa.Column("redact", sa.JSON, nullable=True),
        sa.Column("approval_id", sa.Text, nullable=True),
        sa.Column("wake_at", sa.Double, nullable=True),
        sa.Column("started_at", sa.Double, nullable=True),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Column("compensation", sa.Text, nullable=True),
        sa.Column("compensation_error", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "step_id", name=op.f("pk_run_steps")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_steps_run_id_runs")),
        sa.CheckConstraint(f"status IN {STEP_STATUSES}", name=op.f("ck_run_steps_status")),
    )

    op.create_table(
        "step_attempts",
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("fencing_token", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint(
            "run_id", "step_id", "purpose", "attempt", name=op.f("pk_step_attempts")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_step_attempts_run_id_runs")),
    )

    op.create_table(
        "schedules",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("cron", sa.Text, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("plan_hash", sa.Text, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("principal", sa.JSON, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("next_fire_at", sa.Double, nullable=False),
        sa.Column("last_fired_at", sa.Double, nullable=True),
        sa.Column("last_run_id", sa.Text, nullable=True),
        sa.Column("lease_expires_at", sa.Double, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_schedules_name")),
    )
    op.create_index(op.f("ix_schedules_next_fire_at"), "schedules", ["next_fire_at"])


def downgrade() -> None:
    for table in ("schedules", "step_attempts", "run_steps", "runs"):
        op.drop_table(table)
