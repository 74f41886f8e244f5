"""The schema, as SQLAlchemy Core tables on one `metadata`.

This file describes the newest schema; the migrations in `migrations/versions/` are
what create it (a test checks that they agree). Append-only triggers are not
expressible here and live in the migrations only.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
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

# --- approvals (gateway/approvals) ---------------------------------------------------
# One row per approval request. Times are fixed-width UTC text (TIME_FORMAT in
# gateway/approvals/models.py), so comparisons of the strings compare the instants on
# both dialects. ``version`` is unique and grows with every change of any row: the
# change feed of the console.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("requester_sub", Text, nullable=False),
    Column("requester_iss", Text, nullable=False),
    # The requester's identity key (gateway.types.Identity.key): what binds.
    Column("requester", Text, nullable=False),
    Column("requester_act_chain", JSON, nullable=False),
    Column("tool", Text, nullable=False),
    Column("definition_hash", Text, nullable=True),
    Column("arguments_hash", Text, nullable=False),
    Column("arguments_display", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("approvers", JSON, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("decided_by", Text, nullable=True),
    Column("decided_at", Text, nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("channel", Text, nullable=True),
    Column("execution_state", Text, nullable=False),
    Column("execution_request_id", Text, nullable=True),
    Column("outcome", JSON, nullable=True),
    Column("request_seq", BigInteger, nullable=True),
    Column("decision_seq", BigInteger, nullable=True),
    Column("version", BigInteger, nullable=False),
    CheckConstraint(
        "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')", name="status"
    ),
    CheckConstraint("execution_state IN ('none', 'running', 'done')", name="execution_state"),
    Index("ix_approvals_binding", "requester", "tool", "arguments_hash", "status"),
    Index(None, "status"),
    Index(None, "version", unique=True),
)

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

# --- executor (gateway/executor) ------------------------------------------------------
# Times are seconds since the epoch as read from the database clock (never a worker's),
# so lease and timer arithmetic is plain subtraction on both dialects. A worker may
# write a run (and its steps) only while ``fencing_token`` is the one it claimed with.
RUN_STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "cancelled")
STEP_STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "skipped", "cancelled")

runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("plan_hash", Text, nullable=False),
    Column("inputs", JSON, nullable=False),
    # The submitter's principal: every step runs under it, the executor appended.
    Column("principal", JSON, nullable=False),
    Column("submitted_by", Text, nullable=False),
    # The submitter's identity key (gateway.types.Identity.key): who owns the run.
    Column("owner", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("request_id", Text, nullable=True),
    Column("provenance", JSON, nullable=False),
    Column("schedule_id", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("deadline_at", Double, nullable=True),
    # A waiting run is claimable again from this time (timer, backoff, approval).
    Column("wake_at", Double, nullable=True),
    Column("lease_owner", Text, nullable=True),
    Column("lease_expires_at", Double, nullable=True),
    Column("fencing_token", BigInteger, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("tool_calls", Integer, nullable=False),
    Column("max_tool_calls", Integer, nullable=False),
    Column("error", JSON, nullable=True),
    # The review of the whole plan (docs/workflows.md, "Plan review"): NULL when the
    # plan needed none; "pending" while the run waits for ``review_approval_id`` before
    # any step; "approved" once it may run.
    Column("review_status", Text, nullable=True),
    Column("review_approval_id", Text, nullable=True),
    UniqueConstraint("owner", "idempotency_key"),
    CheckConstraint(f"status IN {RUN_STATUSES}", name="status"),
    CheckConstraint(
        "review_status IS NULL OR review_status IN ('pending', 'approved')", name="review_status"
    ),
    Index("ix_runs_claim", "status", "wake_at"),
    Index(None, "created_at"),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", Text, ForeignKey("runs.id"), nullable=False),
    Column("step_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),  # attempts started
    Column("failures", Integer, nullable=False),  # attempts that failed (the retry budget)
    Column("idempotency_key", Text, nullable=False),  # "<run id>:<step id>", every attempt
    Column("arguments", JSON, nullable=True),  # as sent, redacted by the decision
    Column("output", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("decision", JSON, nullable=True),
    Column("redact", JSON, nullable=True),
    Column("approval_id", Text, nullable=True),
    Column("wake_at", Double, nullable=True),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("compensation", Text, nullable=True),  # null, succeeded or failed
    Column("compensation_error", JSON, nullable=True),
    # The tool result document the last attempt's call returned (what its call.outcome's
    # result_sha256 hashes), kept for `gateway runs replay`; erased with the step
    # (docs/decisions/0029).
    Column("result", JSON, nullable=True),
    PrimaryKeyConstraint("run_id", "step_id"),
    CheckConstraint(f"status IN {STEP_STATUSES}", name="status"),
)

step_attempts = Table(
    "step_attempts",
    metadata,
    Column("run_id", Text, ForeignKey("runs.id"), nullable=False),
    Column("step_id", Text, nullable=False),
    Column("purpose", Text, nullable=False),  # "step" or "compensate"
    Column("attempt", Integer, nullable=False),
    Column("request_id", Text, nullable=True),
    Column("idempotency_key", Text, nullable=False),
    Column("worker", Text, nullable=False),
    Column("fencing_token", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("error", JSON, nullable=True),
    PrimaryKeyConstraint("run_id", "step_id", "purpose", "attempt"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("cron", Text, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("plan_hash", Text, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("principal", JSON, nullable=False),
    Column("created_by", Text, nullable=False),
    # The creator's identity key (gateway.types.Identity.key): who owns the schedule.
    Column("owner", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("next_fire_at", Double, nullable=False),
    Column("last_fired_at", Double, nullable=True),
    Column("last_run_id", Text, nullable=True),
    # A worker firing this schedule holds it until then (another takes over after).
    Column("lease_expires_at", Double, nullable=True),
    Column("enabled", Boolean, nullable=False),
    UniqueConstraint("name"),
    Index(None, "next_fire_at"),
)

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


# --- limits (gateway/limits/) ----------------------------------------------------------
# Policy's limits on calls (docs/decisions/0031), shared by every replica. ``key`` is
# the SHA-256 (hex) of a limit's name and scope, never the scope itself. Times are
# epoch seconds on the clock every process shares (`gateway.store.clock`).

# One row per limit key: the calls counted in its current fixed window, and the row a
# concurrency limit locks while it counts its slots (the order of replicas' writes).
limit_counters = Table(
    "limit_counters",
    metadata,
    Column("key", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("window_start", Double, nullable=False),
    Column("calls", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index(None, "updated_at"),
)

# One row per call in flight under a concurrency limit, held by one process. Deleted
# when the call ends; a process that dies leaves it, and it stops counting at
# ``expires_at`` (acquired_at + limits.concurrency_lease_s).
limit_slots = Table(
    "limit_slots",
    metadata,
    Column("id", Text, primary_key=True),
    Column("key", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("holder", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("acquired_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_limit_slots_key", "key", "expires_at"),
)
