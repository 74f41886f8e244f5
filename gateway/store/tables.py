"""The schema, as SQLAlchemy Core tables on one `metadata`.

This file describes the newest schema; the migrations in `migrations/versions/` are
what create it (a test checks that they agree). Append-only triggers are not
expressible here and live in the migrations only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

# Deterministic constraint names on both dialects, so later migrations can name them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# On SQLite an INTEGER PRIMARY KEY is the rowid itself: no second index to maintain on
# every append, and max(seq) is a single b-tree seek.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

audit_entries = Table(
    "audit_entries",
    metadata,
    # The Merkle leaf index; assigned by the sequencer, never by the database.
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("ts", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("ref", Text, nullable=False),
    # The leaf bytes exactly as hashed. ts/kind/ref above are copies for querying;
    # the verifier trusts only these bytes.
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    CheckConstraint("seq >= 0", name="seq_non_negative"),
    CheckConstraint("length(leaf_hash) = 32", name="leaf_hash_len"),
    Index(None, "kind"),
    Index(None, "ref"),
    Index(None, "ts"),
)

audit_payloads = Table(
    "audit_payloads",
    metadata,
    Column("seq", SeqType, ForeignKey("audit_entries.seq"), primary_key=True, autoincrement=False),
    Column("salt", LargeBinary(32), nullable=False),
    # JCS text of the payload: the exact input of the commitment.
    Column("payload", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("tool", Text, nullable=True),
    CheckConstraint("length(salt) = 32", name="salt_len"),
    Index(None, "subject"),
    Index(None, "tool"),
)
