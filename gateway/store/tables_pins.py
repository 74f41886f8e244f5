"""The pinned definitions' table: what a human approved of each upstream tool,
prompt, resource and template."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, Table, Text

from gateway.store.tables_metadata import metadata

# --- pinned tool definitions (gateway/upstreams/pins.py) -----------------------------
# One row per gateway tool name. ``definition_hash``/``definition`` are what was last
# approved (NULL definition: known only by a hash pinned in config); while quarantined,
# ``pending_*`` hold the live definition awaiting approval. ``version`` is unique and
# grows with every change of any row: the change feed of the console.
tool_pins = Table(
    "tool_pins",
    metadata,
    # What is pinned (gateway.offerings.DefinitionKind) and its gateway name: a tool's
    # or prompt's <upstream>__<name>, a resource's gateway URI, a template's gateway
    # URI template. A prompt may share its name with a tool, hence the pair.
    Column("kind", Text, primary_key=True, server_default="tool"),
    Column("name", Text, primary_key=True),
    Column("upstream", Text, nullable=True),
    Column("definition_hash", Text, nullable=False),
    Column("definition", JSON, nullable=True),
    Column("status", Text, nullable=False),
    Column("pending_hash", Text, nullable=True),
    Column("pending_definition", JSON, nullable=True),
    Column("first_seen", Text, nullable=False),
    Column("changed_at", Text, nullable=False),
    Column("approved_by", Text, nullable=True),
    Column("approved_at", Text, nullable=True),
    Column("version", BigInteger, nullable=False),
    CheckConstraint("status IN ('pinned', 'quarantined')", name="status"),
    CheckConstraint("kind IN ('tool', 'prompt', 'resource', 'resource_template')", name="kind"),
    Index(None, "version", unique=True),
    Index(None, "upstream"),
)
