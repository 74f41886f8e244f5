"""The audit log: entries (leaves), payloads beside them, append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the type in tables.py: a migration must not change when tables.py does.
SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Triggers make the database itself refuse to rewrite history, whatever code (or
# operator with an SQL shell and the gateway's role) tries. They do not stop the
# database owner from dropping them: that is what externally held checkpoints are for.
SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: UPDATE is not allowed'); END
    """,
    """
    CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: DELETE is not allowed'); END
    """,
    """
    CREATE TRIGGER audit_payloads_no_update BEFORE UPDATE ON audit_payloads
    BEGIN SELECT RAISE(ABORT, 'audit_payloads cannot be updated, only erased'); END
    """,
]

POSTGRESQL_TRIGGERS = [
    """
    CREATE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_entries_no_update_delete BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    # Row triggers do not fire on TRUNCATE.
    """
    CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE TRIGGER audit_payloads_no_update BEFORE UPDATE ON audit_payloads
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
]


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", SeqType, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.CheckConstraint("seq >= 0", name=op.f("ck_audit_entries_seq_non_negative")),
        sa.CheckConstraint("length(leaf_hash) = 32", name=op.f("ck_audit_entries_leaf_hash_len")),
    )
    op.create_index(op.f("ix_audit_entries_kind"), "audit_entries", ["kind"])
    op.create_index(op.f("ix_audit_entries_ref"), "audit_entries", ["ref"])
    op.create_index(op.f("ix_audit_entries_ts"), "audit_entries", ["ts"])

    op.create_table(
        "audit_payloads",
        sa.Column("seq", SeqType, autoincrement=False),
        sa.Column("salt", sa.LargeBinary(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("tool", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_payloads")),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_entries.seq"], name=op.f("fk_audit_payloads_seq_audit_entries")
        ),
        sa.CheckConstraint("length(salt) = 32", name=op.f("ck_audit_payloads_salt_len")),
    )
    op.create_index(op.f("ix_audit_payloads_subject"), "audit_payloads", ["subject"])
    op.create_index(op.f("ix_audit_payloads_tool"), "audit_payloads", ["tool"])

    dialect = op.get_bind().dialect.name
    triggers = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(dialect)
    if triggers is None:
        raise RuntimeError(f"no append-only triggers for database {dialect!r}")
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    # Going below this revision means dropping the audit log; no command should do
    # that as a side effect of a version change.
    raise RuntimeError("the audit log cannot be downgraded: that would destroy it")
