"""The audit log's tables: its entries and payloads, the Merkle tree above them, the
signed checkpoints, the signing keys and witnesses' cosignatures."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
)

from gateway.store.tables_metadata import metadata

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

# --- the Merkle tree, checkpoints and keys (gateway/audit/tree_store.py, checkpointer.py,
# keys.py) --------------------------------------------------------------------------------
# Complete subtree hashes above the leaves (level 0 is audit_entries.leaf_hash). Derived
# from the leaves and final once written: they turn a proof into O(log n) lookups.
audit_tree_nodes = Table(
    "audit_tree_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", SeqType, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("level >= 1 AND level < 64", name="level_range"),
    CheckConstraint("idx >= 0", name="idx_non_negative"),
    CheckConstraint("length(hash) = 32", name="hash_len"),
)

# Signed checkpoints (C2SP tlog-checkpoint notes), one per tree size, append-only.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", SeqType, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("ts", Text, nullable=False),
    CheckConstraint("size >= 0", name="size_non_negative"),
    CheckConstraint("length(root) = 32", name="root_len"),
)

# Every public key the log signs with and the tree sizes it may sign (inclusive).
# Rows are never deleted; valid_to_size may be set once (rotation).
audit_keys = Table(
    "audit_keys",
    metadata,
    Column("name", Text, primary_key=True),
    Column("key_id", LargeBinary(4), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("valid_from_size", BigInteger, nullable=False),
    Column("valid_to_size", BigInteger, nullable=True),
    Column("created", Text, nullable=False),
    CheckConstraint("length(key_id) = 4", name="key_id_len"),
    CheckConstraint("length(public_key) = 32", name="public_key_len"),
    CheckConstraint("valid_from_size >= 0", name="valid_from_non_negative"),
    CheckConstraint(
        "valid_to_size IS NULL OR valid_to_size >= valid_from_size", name="valid_range"
    ),
)

# Witnesses' cosignatures (C2SP tlog-cosignature) of signed checkpoints: one line per
# witness key and tree size, as the witness answered it. Append-only like the
# checkpoints they sign; the published checkpoint is the note with these lines added.
audit_cosignatures = Table(
    "audit_cosignatures",
    metadata,
    Column("size", SeqType, primary_key=True, autoincrement=False),
    Column("witness", Text, primary_key=True),
    Column("key_id", LargeBinary(4), primary_key=True),
    Column("timestamp", BigInteger, nullable=False),
    Column("line", Text, nullable=False),
    Column("ts", Text, nullable=False),
    CheckConstraint("size > 0", name="size_positive"),
    CheckConstraint("length(key_id) = 4", name="key_id_len"),
)
