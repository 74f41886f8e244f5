"""Pinned definitions of every kind: tools, prompts, resources and resource templates.

``tool_pins`` gains ``kind`` (what is pinned) and ``upstream`` (whose it is, so one
upstream's pending definitions can be approved at once); ``tool`` becomes ``name``
(a tool's or prompt's gateway name, a resource's gateway URI or a template's gateway
URI template) and the key is (kind, name): a prompt may share its name with a tool.
Existing rows are tools; their upstream is read off their stored definition.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "('tool', 'prompt', 'resource', 'resource_template')"


def _upstream_of(tool: str, definition: Any) -> str | None:
    """``<upstream>`` of ``<upstream>__<tool>``, given the upstream's own tool name."""
    if isinstance(definition, str):
        definition = json.loads(definition)
    own = definition.get("name") if isinstance(definition, dict) else None
    if isinstance(own, str) and tool.endswith("__" + own):
        return tool[: -len("__" + own)] or None
    return None


def upgrade() -> None:
    with op.batch_alter_table("tool_pins") as batch:
        batch.add_column(sa.Column("kind", sa.Text, nullable=False, server_default="tool"))
        batch.add_column(sa.Column("upstream", sa.Text, nullable=True))
        batch.alter_column("tool", new_column_name="name", existing_type=sa.Text)
        batch.drop_constraint("pk_tool_pins", type_="primary")
        batch.create_primary_key("pk_tool_pins", ["kind", "name"])
        batch.create_check_constraint("kind", f"kind IN {KINDS}")
    connection = op.get_bind()
    table = sa.table(
        "tool_pins",
        sa.column("kind", sa.Text),
        sa.column("name", sa.Text),
        sa.column("upstream", sa.Text),
        sa.column("definition", sa.JSON),
        sa.column("pending_definition", sa.JSON),
    )
    for row in connection.execute(
        sa.select(table.c.name, table.c.definition, table.c.pending_definition)
    ).all():
        upstream = _upstream_of(row.name, row.definition) or _upstream_of(
            row.name, row.pending_definition
        )
        connection.execute(
            table.update()
            .where(table.c.kind == "tool", table.c.name == row.name)
            .values(upstream=upstream)
        )
    op.create_index(op.f("ix_tool_pins_upstream"), "tool_pins", ["upstream"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tool_pins_upstream"), table_name="tool_pins")
    op.execute("DELETE FROM tool_pins WHERE kind != 'tool'")
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("tool_pins") as batch:
        batch.drop_constraint("kind", type_="check")
        if not sqlite:  # SQLite's copy of the table takes the new key in place of the old
            batch.drop_constraint("pk_tool_pins", type_="primary")
        batch.alter_column("name", new_column_name="tool", existing_type=sa.Text)
        batch.create_primary_key("pk_tool_pins", ["tool"])
        batch.drop_column("upstream")
        batch.drop_column("kind")
