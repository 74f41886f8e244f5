"""The executor's tables: runs, their steps and every attempt of a step, and
schedules."""

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
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store.tables_metadata import metadata

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
