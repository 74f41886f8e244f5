"""The MCP surface's tables: the single-use ids of relayed requests for client
input, and the tasks the gateway gave MCP clients."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Double, Index, Table, Text

from gateway.store.tables_metadata import metadata

# --- relayed requests for client input (gateway/surfaces/mcp_relay_state.py) --------
# One row per sealed ``requestState`` the gateway handed a 2026-07-28 client and then
# accepted back: its single-use id and when it expires (epoch seconds). Inserting the id
# is how a state is used; a second insert of the same id is a replay. Rows past their
# expiry are deleted: an expired state is refused by its seal before the table is asked.
relay_states = Table(
    "relay_states",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("expires_at", Double, nullable=False),
    Index(None, "expires_at"),
)


# --- MCP tasks (gateway/surfaces/mcp_task_store.py) ------------------------------------
# One row per task the gateway gave an MCP client: a tool call held for approval (its
# approval and the one-step run that executes it once approved), or a task-augmented
# call answered at once (its result kept until the task expires), or an upstream's own
# task a task-augmented call became (docs/decisions/0030). Bound to the identity that
# created it: nobody else reads it.
TASK_KINDS = ("held", "result", "upstream")

mcp_tasks = Table(
    "mcp_tasks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    # The creator's identity key (gateway.types.Identity.key): the only reader.
    Column("owner", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    # The tool's gateway name, and the upstream of /mcp/{upstream} (NULL: /mcp).
    Column("tool", Text, nullable=False),
    Column("endpoint", Text, nullable=True),
    Column("approval_id", Text, nullable=True),
    Column("run_id", Text, nullable=True),
    # An answered call's tool result, as the client would have got it.
    Column("result", JSON, nullable=True),
    # kind upstream: the upstream's task id (the upstream is the tool's), and when the
    # call's outcome was recorded (once: at the first fetch of its result).
    Column("upstream_task_id", Text, nullable=True),
    Column("outcome_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("ttl_ms", BigInteger, nullable=False),
    Column("expires_at", Double, nullable=False),
    CheckConstraint(f"kind IN {TASK_KINDS}", name="kind"),
    Index("ix_mcp_tasks_owner", "owner", "created_at"),
    Index(None, "expires_at"),
)
