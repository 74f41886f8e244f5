"""The workflows' tables: published versions, which version each channel runs, and
every promotion."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Table, Text, UniqueConstraint

from gateway.store.tables_metadata import metadata

# --- workflows (gateway/workflows) ----------------------------------------------------
# A published version of a workflow, addressed by the hash of its content (``id`` is
# derived from ``content_hash``); immutable: an UPDATE trigger (migration 0010) refuses
# changes. Times are fixed-width UTC text (gateway.timestamps).
workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    # The normalized manifest: plan template, pinned tools, scenarios, ...
    Column("document", JSON, nullable=False),
    Column("published_by", Text, nullable=False),
    Column("published_at", Text, nullable=False),
    UniqueConstraint("name", "version"),
)

# Which version each channel of a workflow runs (``dev``, ``staging``, ``prod`` ...).
workflow_channels = Table(
    "workflow_channels",
    metadata,
    Column("name", Text, primary_key=True),
    Column("channel", Text, primary_key=True),
    Column("version", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("promoted_by", Text, nullable=False),
    Column("promoted_at", Text, nullable=False),
)

# Every promotion, in order: what a channel ran before (a rollback promotes one of these).
workflow_channel_history = Table(
    "workflow_channel_history",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("previous_version", Text, nullable=True),
    Column("promoted_by", Text, nullable=False),
    Column("promoted_at", Text, nullable=False),
    Column("approval_id", Text, nullable=True),
    Index("ix_workflow_channel_history_name", "name", "channel"),
)
