"""One identity per person: approvals are bound to, runs and schedules owned by, an identity key
(issuer and canonical subject, `gateway.types.Identity.key`) instead of the subject
string as the token spelled it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of `gateway.types.canonical_subject` as of this revision: a migration
# must not change when the code does.
_KIND = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.+)", re.DOTALL)


def _key(iss: str, sub: str) -> str:
    kinded = _KIND.fullmatch(sub)
    canonical = "user:" + sub if kinded is None else kinded.group(1).lower() + ":" + kinded.group(2)
    return f"{iss}\n{canonical}"


def upgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("requester", sa.Text, nullable=True))
    approvals = sa.table(
        "approvals",
        sa.column("id", sa.Text),
        sa.column("requester_sub", sa.Text),
        sa.column("requester_iss", sa.Text),
        sa.column("requester", sa.Text),
    )
    for row in connection.execute(
        sa.select(approvals.c.id, approvals.c.requester_sub, approvals.c.requester_iss)
    ).all():
        connection.execute(
            approvals.update()
            .where(approvals.c.id == row.id)
            .values(requester=_key(row.requester_iss, row.requester_sub))
        )
    op.drop_index("ix_approvals_binding", table_name="approvals")
    with op.batch_alter_table("approvals") as batch:
        batch.alter_column("requester", existing_type=sa.Text, nullable=False)
    op.create_index(
        "ix_approvals_binding", "approvals", ["requester", "tool", "arguments_hash", "status"]
    )

    _add_owner(connection, "runs", "submitted_by")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_submitted_by", type_="unique")
        batch.create_unique_constraint("uq_runs_owner", ["owner", "idempotency_key"])
    _add_owner(connection, "schedules", "created_by")


def _add_owner(connection: sa.Connection, name: str, subject_column: str) -> None:
    """``owner``: the identity key of the row's principal (its JSON names the issuer)."""
    with op.batch_alter_table(name) as batch:
        batch.add_column(sa.Column("owner", sa.Text, nullable=True))
    table = sa.table(
        name,
        sa.column("id", sa.Text),
        sa.column("principal", sa.JSON),
        sa.column(subject_column, sa.Text),
        sa.column("owner", sa.Text),
    )
    for row in connection.execute(
        sa.select(table.c.id, table.c.principal, table.c[subject_column])
    ).all():
        principal: Any = row.principal
        if isinstance(principal, str):
            principal = json.loads(principal)
        connection.execute(
            table.update().where(table.c.id == row.id).values(owner=_key(principal["iss"], row[2]))
        )
    with op.batch_alter_table(name) as batch:
        batch.alter_column("owner", existing_type=sa.Text, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_owner", type_="unique")
        batch.create_unique_constraint("uq_runs_submitted_by", ["submitted_by", "idempotency_key"])
        batch.drop_column("owner")
    op.drop_index("ix_approvals_binding", table_name="approvals")
    op.create_index(
        "ix_approvals_binding", "approvals", ["requester_sub", "tool", "arguments_hash", "status"]
    )
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("requester")
