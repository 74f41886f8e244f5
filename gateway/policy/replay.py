"""Decision replay: yesterday's real calls against a candidate policy.

Every ``call.decision`` entry of the audit log holds the policy input the gateway
asked about (redacted where the decision said so) and the decision it got. Replay
evaluates each recorded input with a candidate policy and classifies the difference
per call, so a policy change can be tested against real traffic before it is
promoted.

What cannot be replayed is counted, never guessed at:
- decisions made by the gateway itself before policy (unknown tool, invalid
  arguments: engine ``gateway``) had no policy input;
- inputs whose arguments were withheld (the policy had failed, so nothing said what to
  redact) would be evaluated with a placeholder instead of arguments;
- erased payloads (a data subject's request) are gone.

Redacted values are evaluated as the redaction marker: a rule that looks at a secret's
value cannot be replayed faithfully, a rule that looks at its name can.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from gateway.audit import AuditEntry, read_entries
from gateway.errors import PolicyError
from gateway.policy.conformance import DECISION_FIELDS, comparable
from gateway.policy.embedded import EmbeddedEngine
from gateway.recording import is_withheld
from gateway.types import FAIL_CLOSED_RULE, GATEWAY_ENGINE, Decision, deny

PAGE_SIZE = 500

FailOn = Literal["allow", "deny", "any"]


class Change(enum.StrEnum):
    UNCHANGED = "unchanged"
    DENY_TO_ALLOW = "deny_to_allow"
    ALLOW_TO_DENY = "allow_to_deny"
    APPROVAL_ADDED = "approval_added"
    APPROVAL_DROPPED = "approval_dropped"
    # Same effect (allow, deny, approval), other reasons, rule or obligations.
    DETAILS_CHANGED = "details_changed"


# What each --fail-on value fails on: "allow" is anything that lets more through,
# "deny" anything that lets less through. Detail changes are informational only.
LOOSER = frozenset({Change.DENY_TO_ALLOW, Change.APPROVAL_DROPPED})
STRICTER = frozenset({Change.ALLOW_TO_DENY, Change.APPROVAL_ADDED})
FAIL_ON: dict[str, frozenset[Change]] = {
    "allow": LOOSER,
    "deny": STRICTER,
    "any": LOOSER | STRICTER,
}


class Skipped(enum.StrEnum):
    PRE_POLICY = "pre_policy"  # refused by the gateway before policy: no input
    WITHHELD = "withheld"  # arguments withheld from the record
    NO_INPUT = "no_input"  # a decision without a recorded input
    ERASED = "erased"  # payload erased


@dataclass(frozen=True)
class ReplayedCall:
    seq: int
    ts: str
    request_id: str
    principal: str | None
    tool: str | None
    change: Change
    old: dict[str, Any]  # the DECISION_FIELDS as recorded, plus engine and revision
    new: dict[str, Any]  # the DECISION_FIELDS from the candidate

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "request_id": self.request_id,
            "principal": self.principal,
            "tool": self.tool,
            "change": self.change.value,
            "old": self.old,
            "new": self.new,
        }


@dataclass
class ReplayReport:
    policy_path: str
    revision: str
    since: str | None = None
    until: str | None = None
    counts: Counter[Change] = field(default_factory=Counter)
    skipped: Counter[Skipped] = field(default_factory=Counter)
    redacted_inputs: int = 0  # replayed with values the record had redacted
    revisions: Counter[str] = field(default_factory=Counter)  # policies that decided them
    differences: list[ReplayedCall] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return sum(self.counts.values())

    def failures(self, fail_on: FailOn | None) -> list[ReplayedCall]:
        """The differences that ``--fail-on`` names."""
        if fail_on is None:
            return []
        kinds = FAIL_ON[fail_on]
        return [c for c in self.differences if c.change in kinds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": {"path": self.policy_path, "revision": self.revision},
            "window": {"since": self.since, "until": self.until},
            "replayed": self.replayed,
            "counts": {change.value: self.counts.get(change, 0) for change in Change},
            "skipped": {reason.value: self.skipped.get(reason, 0) for reason in Skipped},
            "redacted_inputs": self.redacted_inputs,
            "recorded_revisions": dict(self.revisions),
            "differences": [c.to_dict() for c in self.differences],
        }


def classify(old: dict[str, Any], new: dict[str, Any]) -> Change:
    """The difference between two decisions (dicts with the DECISION_FIELDS)."""
    old_allow, new_allow = bool(old.get("allow")), bool(new.get("allow"))
    if old_allow != new_allow:
        return Change.DENY_TO_ALLOW if new_allow else Change.ALLOW_TO_DENY
    if new_allow:
        old_approval, new_approval = (
            bool(old.get("require_approval")),
            bool(new["require_approval"]),
        )
        if old_approval != new_approval:
            return Change.APPROVAL_ADDED if new_approval else Change.APPROVAL_DROPPED
    if any(old.get(name) != new.get(name) for name in DECISION_FIELDS):
        return Change.DETAILS_CHANGED
    return Change.UNCHANGED


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset (``Z`` or ``+01:00``); ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset (add Z for UTC)")
    return moment


def replay(
    database: sa.Engine,
    engine: EmbeddedEngine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> ReplayReport:
    """Replays the ``call.decision`` entries with ``since <= ts < until`` (the first
    ``limit`` of them, oldest first) against ``engine``'s policy."""
    report = ReplayReport(
        policy_path=str(engine.path),
        revision=engine.revision,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
    )
    for entry in _decisions(database):
        if limit is not None and report.replayed >= limit:
            break
        moment = parse_timestamp(entry.ts)
        if (since is not None and moment < since) or (until is not None and moment >= until):
            continue
        _replay_entry(entry, engine, report)
    return report


def _decisions(database: sa.Engine) -> Iterator[AuditEntry]:
    """Every call.decision entry, oldest first, a page at a time."""
    start = 0
    while True:
        page = read_entries(database, start=start, kind="call.decision", limit=PAGE_SIZE)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        start = page[-1].seq + 1


def _replay_entry(entry: AuditEntry, engine: EmbeddedEngine, report: ReplayReport) -> None:
    payload = entry.payload
    if payload is None:
        report.skipped[Skipped.ERASED] += 1
        return
    recorded = payload.get("decision")
    policy_input = payload.get("input")
    if isinstance(recorded, dict) and recorded.get("engine") == GATEWAY_ENGINE:
        report.skipped[Skipped.PRE_POLICY] += 1
        return
    if not isinstance(recorded, dict) or not isinstance(policy_input, dict):
        report.skipped[Skipped.NO_INPUT] += 1
        return
    if is_withheld(policy_input.get("arguments")):
        report.skipped[Skipped.WITHHELD] += 1
        return
    obligations = recorded.get("obligations")
    if isinstance(obligations, dict) and obligations.get("redact"):
        report.redacted_inputs += 1
    report.revisions[str(recorded.get("revision"))] += 1
    old = {name: recorded.get(name) for name in DECISION_FIELDS}
    new = comparable(_evaluate(engine, policy_input))
    change = classify(old, new)
    report.counts[change] += 1
    if change is Change.UNCHANGED:
        return
    subject = _object(policy_input.get("subject"))
    resource = _object(policy_input.get("resource"))
    report.differences.append(
        ReplayedCall(
            seq=entry.seq,
            ts=entry.ts,
            request_id=str(payload.get("request_id") or entry.ref),
            principal=entry.subject or subject.get("sub"),
            tool=entry.tool or resource.get("tool"),
            change=change,
            old={**old, "engine": recorded.get("engine"), "revision": recorded.get("revision")},
            new=new,
        )
    )


def _evaluate(engine: EmbeddedEngine, policy_input: dict[str, Any]) -> Decision:
    """As `gateway.policy.decide` would answer: any failure is a deny that says why."""
    try:
        return engine.evaluate_sync(policy_input)
    except PolicyError as exc:
        reason = f"{exc.message}; denied (fail closed)"
    except Exception as exc:  # an engine bug is a deny in production, so here too
        reason = f"policy engine error ({type(exc).__name__}); denied (fail closed)"
    return replace(
        deny(reason, engine=engine.name, revision=engine.revision), rule=FAIL_CLOSED_RULE
    )


def _object(value: Any) -> dict[str, Any]:
    # Recorded inputs are read as they are: a malformed part is empty, never a crash.
    return value if isinstance(value, dict) else {}
