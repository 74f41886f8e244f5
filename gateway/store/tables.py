"""The schema, as SQLAlchemy Core tables on one `metadata`: the one place that names
every table. Import tables from here; each is defined, with its comments, in the module
of its concern:

- `tables_metadata`: the `metadata` itself and its naming convention;
- `tables_audit`: the audit log (entries, payloads, tree nodes, checkpoints, keys,
  cosignatures);
- `tables_approvals`: approval requests;
- `tables_pins`: pinned tool, prompt and resource definitions;
- `tables_mcp`: the MCP surface's relayed-request states and tasks;
- `tables_executor`: runs, their steps and attempts, schedules;
- `tables_workflows`: published workflow versions, channels and promotions;
- `tables_limits`: the limits' counters and slots.

Importing this module registers every table on `metadata` (the migrations' env.py and
`metadata.create_all` rely on it).

This schema is the newest; the migrations in `migrations/versions/` are what create it
(a test checks that they agree). Append-only triggers are not expressible here and live
in the migrations only.
"""

from __future__ import annotations

from gateway.store.tables_approvals import approvals
from gateway.store.tables_audit import (
    audit_checkpoints,
    audit_cosignatures,
    audit_entries,
    audit_keys,
    audit_payloads,
    audit_tree_nodes,
)
from gateway.store.tables_executor import (
    RUN_STATUSES,
    STEP_STATUSES,
    run_steps,
    runs,
    schedules,
    step_attempts,
)
from gateway.store.tables_limits import limit_counters, limit_slots
from gateway.store.tables_mcp import TASK_KINDS, mcp_tasks, relay_states
from gateway.store.tables_metadata import metadata
from gateway.store.tables_pins import tool_pins
from gateway.store.tables_workflows import (
    workflow_channel_history,
    workflow_channels,
    workflow_versions,
)

__all__ = [
    "RUN_STATUSES",
    "STEP_STATUSES",
    "TASK_KINDS",
    "approvals",
    "audit_checkpoints",
    "audit_cosignatures",
    "audit_entries",
    "audit_keys",
    "audit_payloads",
    "audit_tree_nodes",
    "limit_counters",
    "limit_slots",
    "mcp_tasks",
    "metadata",
    "relay_states",
    "run_steps",
    "runs",
    "schedules",
    "step_attempts",
    "tool_pins",
    "workflow_channel_history",
    "workflow_channels",
    "workflow_versions",
]
