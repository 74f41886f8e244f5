"""Replay against a real audit log on SQLite, with entries as the pipeline writes them,
including the ones replay must skip (erased, pre-policy, withheld, no input)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.audit import AuditLog, AuditRecord
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import FAIL_CLOSED_RULE
from gateway.policy.replay import Change, Skipped, classify, parse_timestamp, replay
from gateway.recording import WITHHELD
from gateway.store import audit_payloads, create_engine, migrate
from tests.support.fixture_policy import write_fixture_policy

ECHO = {"role": "agent", "tool": "demo__echo"}
DELETE = {"role": "agent", "tool": "demo__delete", "approvers": ["role:ops"]}


def decision(
    allow: bool, *, approval: bool = False, rule: str = "grant", engine: str = "embedded"
) -> dict[str, Any]:
    return {
        "allow": allow,
        "require_approval": approval,
        "reasons": ["allowed by grant"] if allow else ["no grant for this tool"],
        "obligations": {"redact": [], "approvers": []},
        "rule": rule,
        "engine": engine,
        "revision": "sha256:recorded",
        "decision_id": None,
    }


def policy_input(tool: str, arguments: Any = None) -> dict[str, Any]:
    return {
        "version": 1,
        "subject": {"sub": "agent:r", "roles": ["agent"], "act_chain": []},
        "action": "tools/call",
        "resource": {"tool": tool},
        "arguments": {} if arguments is None else arguments,
        "context": {},
    }


def record(ref: str, decided: dict[str, Any], policy_input: dict[str, Any] | None) -> AuditRecord:
    payload = {"request_id": ref, "decision": decided, "input": policy_input}
    return AuditRecord("call.decision", ref, payload, "agent:r", "demo__echo")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(engine)
    log = AuditLog(engine, "test.replay/audit")
    log.append_sync(
        record("req_allowed", decision(True), policy_input("demo__echo")),
        record("req_denied", decision(False, rule="default_deny"), policy_input("demo__nope")),
        record("req_gateway", decision(False, rule=None, engine="gateway"), None),  # type: ignore[arg-type]
        record(
            "req_withheld",
            decision(False, rule=FAIL_CLOSED_RULE),
            policy_input("demo__echo", WITHHELD),
        ),
        record("req_no_input", decision(True), None),
        record("req_erased", decision(True), policy_input("demo__echo")),
        AuditRecord("call.attempt", "req_other", {"request_id": "req_other"}),
        record("req_explodes", decision(True), policy_input("demo__echo", {"explode": "x"})),
    )
    with engine.begin() as conn:  # an erasure removes the payload, never the leaf
        erased = conn.execute(
            sa.text("SELECT seq FROM audit_entries WHERE ref = 'req_erased'")
        ).scalar_one()
        conn.execute(audit_payloads.delete().where(audit_payloads.c.seq == erased))
    yield engine
    engine.dispose()


def test_replay_skips_and_counts_what_it_cannot_replay(database: sa.Engine, tmp_path: Path) -> None:
    engine = EmbeddedEngine(write_fixture_policy(tmp_path / "policy", [ECHO, DELETE]))
    report = replay(database, engine)
    assert report.skipped == {
        Skipped.PRE_POLICY: 1,
        Skipped.WITHHELD: 1,
        Skipped.NO_INPUT: 1,
        Skipped.ERASED: 1,
    }
    assert report.replayed == 3
    # The candidate fails on "explode" and, as the gateway would, denies.
    [exploded] = report.differences
    assert (exploded.request_id, exploded.change) == ("req_explodes", Change.ALLOW_TO_DENY)
    assert exploded.new["rule"] == FAIL_CLOSED_RULE
    assert "fail closed" in exploded.new["reasons"][0]
    assert report.counts[Change.UNCHANGED] == 2
    assert report.revisions == {"sha256:recorded": 3}


def test_limit_and_window(database: sa.Engine, tmp_path: Path) -> None:
    engine = EmbeddedEngine(write_fixture_policy(tmp_path / "policy", [ECHO]))
    assert replay(database, engine, limit=1).replayed == 1
    future = datetime(2999, 1, 1, tzinfo=UTC)
    assert replay(database, engine, since=future).replayed == 0
    assert replay(database, engine, until=future).replayed == 3


@pytest.mark.parametrize(
    ("old", "new", "change"),
    [
        ((False, False), (True, False), Change.DENY_TO_ALLOW),
        ((False, False), (True, True), Change.DENY_TO_ALLOW),
        ((True, False), (False, False), Change.ALLOW_TO_DENY),
        ((True, True), (False, False), Change.ALLOW_TO_DENY),
        ((True, False), (True, True), Change.APPROVAL_ADDED),
        ((True, True), (True, False), Change.APPROVAL_DROPPED),
        ((False, True), (False, False), Change.DETAILS_CHANGED),  # a deny stays a deny
        ((True, False), (True, False), Change.UNCHANGED),
    ],
)
def test_classify(old: tuple[bool, bool], new: tuple[bool, bool], change: Change) -> None:
    def doc(allow: bool, approval: bool) -> dict[str, Any]:
        return {
            "allow": allow,
            "require_approval": approval,
            "reasons": [],
            "obligations": {},
            "rule": "r",
        }

    assert classify(doc(*old), doc(*new)) is change


def test_same_effect_other_details_is_informational() -> None:
    old = {
        "allow": True,
        "require_approval": False,
        "reasons": ["a"],
        "obligations": {},
        "rule": "r",
    }
    assert classify(old, {**old, "rule": "s"}) is Change.DETAILS_CHANGED
    assert (
        classify(old, {**old, "obligations": {"redact": ["/arguments/x"]}})
        is Change.DETAILS_CHANGED
    )


def test_timestamps_need_an_offset() -> None:
    assert parse_timestamp("2026-11-21T10:00:00.123Z").tzinfo is not None
    assert parse_timestamp("2026-11-21T11:00:00+01:00") == parse_timestamp("2026-11-21T10:00:00Z")
    with pytest.raises(ValueError, match="no time zone"):
        parse_timestamp("2026-11-21T10:00:00")
