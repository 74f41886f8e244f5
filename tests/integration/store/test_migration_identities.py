"""Migration 0006 gives existing approvals, runs and schedules their identity keys,
on SQLite and PostgreSQL: rows written by the previous schema are owned and bound
as the gateway now compares people (docs/identity.md)."""

from __future__ import annotations

import json

import sqlalchemy as sa

from gateway.store import create_engine, migrate
from gateway.types import Identity

ISS = "https://issuer.test"


def _old_rows(conn: sa.Connection) -> None:
    common = {"plan": "{}", "plan_hash": "h", "inputs": "{}", "provenance": "{}"}
    conn.execute(
        sa.text(
            "INSERT INTO approvals (id, status, requester_sub, requester_iss, "
            "requester_act_chain, tool, arguments_hash, arguments_display, reasons, "
            "approvers, request_id, created_at, expires_at, execution_state, version) "
            "VALUES ('apr_1', 'pending', 'USER:Alice', :iss, '[]', 't', 'h', '{}', '[]', "
            "'[]', 'req', '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', "
            "'none', 1)"
        ),
        {"iss": ISS},
    )
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, status, plan, plan_hash, inputs, principal, submitted_by, "
            "idempotency_key, provenance, created_at, updated_at, fencing_token, "
            "cancel_requested, tool_calls, max_tool_calls) VALUES ('run_1', 'succeeded', "
            ":plan, :plan_hash, :inputs, :principal, 'Agent:planner', 'k', :provenance, "
            "0, 0, 0, false, 0, 1)"
        ),
        {**common, "principal": json.dumps({"sub": "Agent:planner", "iss": ISS})},
    )
    conn.execute(
        sa.text(
            "INSERT INTO schedules (id, name, cron, plan, plan_hash, inputs, principal, "
            "created_by, created_at, next_fire_at, enabled) VALUES ('sch_1', 'n', "
            "'* * * * *', :plan, :plan_hash, :inputs, :principal, 'bob', 0, 0, true)"
        ),
        {**common, "principal": json.dumps({"sub": "bob", "iss": ISS})},
    )


def test_existing_rows_get_their_identity_keys(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        migrate(engine, "0005")
        with engine.begin() as conn:
            _old_rows(conn)
        migrate(engine)
        with engine.connect() as conn:
            requester = conn.scalar(sa.text("SELECT requester FROM approvals"))
            owner = conn.scalar(sa.text("SELECT owner FROM runs"))
            schedule_owner = conn.scalar(sa.text("SELECT owner FROM schedules"))
    finally:
        engine.dispose()
    assert requester == Identity.of("user:Alice", ISS).key
    assert owner == Identity.of("agent:planner", ISS).key
    assert schedule_owner == Identity.of("user:bob", ISS).key
