"""The audit log's Merkle tree nodes, signed checkpoints and signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the type in tables.py: a migration must not change when tables.py does.
SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Tree nodes and checkpoints are as final as the leaves they derive from: no UPDATE, no
# DELETE. Keys are never deleted, and the only change ever allowed is setting the end
# of a key's validity, once (rotation); a rewritten range would let an old key vouch
# for new history.
SQLITE_TRIGGERS = [
    *(
        f"""
        CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op_name} is not allowed'); END
        """
        for table in ("audit_tree_nodes", "audit_checkpoints")
        for op_name in ("UPDATE", "DELETE")
    ),
    """
    CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
    BEGIN SELECT RAISE(ABORT, 'audit_keys is append-only: DELETE is not allowed'); END
    """,
    """
    CREATE TRIGGER audit_keys_end_once BEFORE UPDATE ON audit_keys
    WHEN OLD.valid_to_size IS NOT NULL
        OR NEW.name IS NOT OLD.name
        OR NEW.key_id IS NOT OLD.key_id
        OR NEW.public_key IS NOT OLD.public_key
        OR NEW.valid_from_size IS NOT OLD.valid_from_size
        OR NEW.created IS NOT OLD.created
    BEGIN SELECT RAISE(ABORT, 'audit_keys: only valid_to_size may be set, and only once'); END
    """,
]

# audit_reject_change() is created by revision 0001.
POSTGRESQL_TRIGGERS = [
    *(
        f"""
        CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
        """
        for table in ("audit_tree_nodes", "audit_checkpoints")
    ),
    *(
        f"""
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()
        """
        for table in ("audit_tree_nodes", "audit_checkpoints", "audit_keys")
    ),
    """
    CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change()
    """,
    """
    CREATE FUNCTION audit_keys_end_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.valid_to_size IS NOT NULL
            OR NEW.name IS DISTINCT FROM OLD.name
            OR NEW.key_id IS DISTINCT FROM OLD.key_id
            OR NEW.public_key IS DISTINCT FROM OLD.public_key
            OR NEW.valid_from_size IS DISTINCT FROM OLD.valid_from_size
            OR NEW.created IS DISTINCT FROM OLD.created
        THEN
            RAISE EXCEPTION 'audit_keys: only valid_to_size may be set, and only once'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER audit_keys_end_once BEFORE UPDATE ON audit_keys
    FOR EACH ROW EXECUTE FUNCTION audit_keys_end_once()
    """,
]


def upgrade() -> None:
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.Integer, autoincrement=False),
        sa.Column("idx", SeqType, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tree_nodes")),
        sa.CheckConstraint(
            "level >= 1 AND level < 64", name=op.f("ck_audit_tree_nodes_level_range")
        ),
        sa.CheckConstraint("idx >= 0", name=op.f("ck_audit_tree_nodes_idx_non_negative")),
        sa.CheckConstraint("length(hash) = 32", name=op.f("ck_audit_tree_nodes_hash_len")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", SeqType, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("ts", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
        sa.CheckConstraint("size >= 0", name=op.f("ck_audit_checkpoints_size_non_negative")),
        sa.CheckConstraint("length(root) = 32", name=op.f("ck_audit_checkpoints_root_len")),
    )
    op.create_table(
        "audit_keys",
        sa.Column("name", sa.Text),
        sa.Column("key_id", sa.LargeBinary(4)),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("valid_from_size", sa.BigInteger, nullable=False),
        sa.Column("valid_to_size", sa.BigInteger, nullable=True),
        sa.Column("created", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", "key_id", name=op.f("pk_audit_keys")),
        sa.CheckConstraint("length(key_id) = 4", name=op.f("ck_audit_keys_key_id_len")),
        sa.CheckConstraint("length(public_key) = 32", name=op.f("ck_audit_keys_public_key_len")),
        sa.CheckConstraint(
            "valid_from_size >= 0", name=op.f("ck_audit_keys_valid_from_non_negative")
        ),
        sa.CheckConstraint(
            "valid_to_size IS NULL OR valid_to_size >= valid_from_size",
            name=op.f("ck_audit_keys_valid_range"),
        ),
    )

    dialect = op.get_bind().dialect.name
    triggers = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(dialect)
    if triggers is None:
        raise RuntimeError(f"no append-only triggers for database {dialect!r}")
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    # Checkpoints may already be published outside the database; dropping them here
    # would not un-publish them, only lose the record of what was signed.
    raise RuntimeError("the audit checkpoints cannot be downgraded: that would destroy them")
