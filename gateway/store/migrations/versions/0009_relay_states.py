"""Single-use ids of the sealed ``requestState`` values the gateway hands 2026-07-28
clients when it relays an upstream's request for input (docs/decisions/0019).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "relay_states",
        sa.Column("jti", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_relay_states")),
    )
    op.create_index(op.f("ix_relay_states_expires_at"), "relay_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_relay_states_expires_at"), table_name="relay_states")
    op.drop_table("relay_states")
