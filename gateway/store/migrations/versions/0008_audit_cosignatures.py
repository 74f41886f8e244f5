"""Witnesses' cosignatures of the audit log's checkpoints (C2SP tlog-cosignature).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the type in tables.py: a migration must not change when tables.py does.
SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# As final as the checkpoints they cosign: no UPDATE, no DELETE (nor TRUNCATE). The
# table is named audit_* so that deploy/postgres/grants.sql gives the app role SELECT
# and INSERT only.
SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER audit_cosignatures_no_{op_name.lower()} BEFORE {op_name}
    ON audit_cosignatures
    BEGIN SELECT RAISE(ABORT, 'audit_cosignatures is append-only: {op_name} is not allowed'); END
    """
    for op_name in ("UPDATE", "DELETE")
]

# audit_reject_change() is created by revision 0001.
POSTGRESQL_TRIGGERS = [
    """
    CREATE TRIGGER audit_cosignatures_no_update_delete BEFORE UPDATE OR DELETE
    ON audit_cosignatures FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER audit_cosignatures_no_truncate BEFORE TRUNCATE ON audit_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
]


def upgrade() -> None:
    op.create_table(
        "audit_cosignatures",
        sa.Column("size", SeqType, autoincrement=False),
        sa.Column("witness", sa.Text),
        sa.Column("key_id", sa.LargeBinary(4)),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("ts", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", "key_id", name=op.f("pk_audit_cosignatures")),
        sa.CheckConstraint("size > 0", name=op.f("ck_audit_cosignatures_size_positive")),
        sa.CheckConstraint("length(key_id) = 4", name=op.f("ck_audit_cosignatures_key_id_len")),
    )
    dialect = op.get_bind().dialect.name
    triggers = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(dialect)
    if triggers is None:
        raise RuntimeError(f"no append-only triggers for database {dialect!r}")
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    # Cosignatures may already be published with their checkpoints; dropping them would
    # only lose the record of what the witnesses vouched for.
    raise RuntimeError("the audit cosignatures cannot be downgraded: that would destroy them")
