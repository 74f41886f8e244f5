"""The `approvals` table (SQLAlchemy Core): every state change as a compare-and-swap.

Blocking functions; `ApprovalService` runs them in worker threads.

Rules kept here, in the ``WHERE`` clause of each update, so that several gateway
processes on one database agree without talking to each other:

- a decision swaps ``pending`` to ``approved``/``denied`` once, before ``expires_at``,
  and only after the request is durable in the audit log (``request_seq``);
- an expiry swaps ``pending`` to ``expired`` once, after ``expires_at``;
- an approved call is claimed for execution once (``execution_state`` ``none`` →
  ``running``), before ``expires_at`` and only once the decision is durable
  (``decision_seq``); only the claiming request records its outcome.

Every change runs under one database-wide lock (SQLite ``BEGIN IMMEDIATE``, a
PostgreSQL advisory lock) and takes the next ``version``: versions are unique and
committed in increasing order, so "everything with version > N" is a complete change
feed. Approvals change at human speed, so serializing their writes costs nothing.

Time: "now" is the clock every process using the database shares (`Dialect.clock`).
PostgreSQL: ``clock_timestamp()`` of the server, so every process compares expiry
against the same clock. SQLite is a local file, so every process using it runs on the
same host: the host's UTC clock is that one clock source. Times are stored as fixed-width UTC
text (`models.TIME_FORMAT`), so SQL string comparison is time comparison.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from gateway.approvals.models import (
    EXPIRY_DECIDER,
    Approval,
    ApprovalStatus,
    ExecutionState,
    add_seconds,
    format_time,
    parse_time,
)
from gateway.store import dialect_of, exclusive_transaction
from gateway.store.tables import approvals as table
from gateway.types import Actor, Identity

# The advisory lock serializing approval writes on PostgreSQL (ASCII "agwapprv").
APPROVALS_LOCK_KEY = 0x6167776170707276

_PAGE = 200


def new_approval_id() -> str:
    return "apr_" + secrets.token_hex(12)


class ApprovalStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = dialect_of(engine)

    def _now(self, conn: Connection) -> str:
        """The current time by the shared clock (see the module docstring)."""
        return format_time(self._dialect.clock(conn))

    # --- reading ------------------------------------------------------------------

    def now(self) -> str:
        with self._engine.connect() as conn:
            return self._now(conn)

    def get(self, approval_id: str) -> tuple[Approval | None, str]:
        """The approval (or None) and the time it was read at."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == approval_id)).first()
            return (_approval(row) if row else None), self._now(conn)

    def newest_bound(
        self, requester: Identity, tool: str, arguments_hash: str
    ) -> tuple[Approval | None, str]:
        """The newest approval bound to this identity, tool and argument hash."""
        query = (
            sa.select(table)
            .where(
                table.c.requester == requester.key,
                table.c.tool == tool,
                table.c.arguments_hash == arguments_hash,
            )
            .order_by(table.c.created_at.desc(), table.c.version.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
            return (_approval(row) if row else None), self._now(conn)

    def scan(self, statuses: tuple[ApprovalStatus, ...] = ()) -> Iterator[Approval]:
        """Approvals newest first, optionally of some statuses, read page by page (the
        caller filters by visibility and stops when it has enough)."""
        query = sa.select(table).order_by(table.c.created_at.desc(), table.c.id)
        if statuses:
            query = query.where(table.c.status.in_([s.value for s in statuses]))
        offset = 0
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(query.limit(_PAGE).offset(offset)).all()
            yield from (_approval(r) for r in rows)
            if len(rows) < _PAGE:
                return
            offset += _PAGE

    def changed_since(self, version: int, limit: int) -> list[Approval]:
        query = (
            sa.select(table).where(table.c.version > version).order_by(table.c.version).limit(limit)
        )
        with self._engine.connect() as conn:
            return [_approval(r) for r in conn.execute(query)]

    def max_version(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.version), 0))))

    def due_for_expiry(self, limit: int = 100) -> list[str]:
        with self._engine.connect() as conn:
            now = self._now(conn)
            query = (
                sa.select(table.c.id)
                .where(table.c.status == ApprovalStatus.PENDING.value, table.c.expires_at <= now)
                .order_by(table.c.expires_at)
                .limit(limit)
            )
            return list(conn.scalars(query))

    # --- changing -----------------------------------------------------------------

    def insert_pending(self, approval: Approval) -> tuple[Approval, bool]:
        """Inserts ``approval`` (pending; its times are recomputed from the database
        clock, keeping its TTL) unless a live pending approval with the same binding
        exists: then that one is returned. ``(approval, created)``."""
        ttl = _seconds_between(approval.created_at, approval.expires_at)
        with exclusive_transaction(self._engine, APPROVALS_LOCK_KEY) as conn:
            now = self._now(conn)
            existing = conn.execute(
                sa.select(table)
                .where(
                    table.c.requester == approval.requester_identity.key,
                    table.c.tool == approval.tool,
                    table.c.arguments_hash == approval.arguments_hash,
                    table.c.status == ApprovalStatus.PENDING.value,
                    table.c.expires_at > now,
                )
                .limit(1)
            ).first()
            if existing is not None:
                return _approval(existing), False
            created = replace(
                approval,
                status=ApprovalStatus.PENDING,
                created_at=now,
                expires_at=add_seconds(now, ttl),
                version=_next_version(conn),
            )
            conn.execute(sa.insert(table).values(**_row(created)))
            return created, True

    def set_request_seq(self, approval_id: str, seq: int) -> Approval | None:
        return self._update(approval_id, [table.c.request_seq.is_(None)], {"request_seq": seq})

    def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        decided_by: str,
        reason: str | None,
        channel: str,
    ) -> Approval | None:
        """pending → approved/denied, if still pending, unexpired and its request is
        audited. None when the swap did not happen."""
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        return self._update(
            approval_id,
            [
                table.c.status == ApprovalStatus.PENDING.value,
                table.c.request_seq.is_not(None),
                table.c.expires_at > sa.bindparam("now"),
            ],
            {
                "status": status.value,
                "decided_by": decided_by,
                "decision_reason": reason,
                "channel": channel,
                "decided_at": sa.bindparam("now"),
            },
        )

    def set_decision_seq(self, approval_id: str, seq: int) -> Approval | None:
        return self._update(approval_id, [table.c.decision_seq.is_(None)], {"decision_seq": seq})

    def undo_decision(self, approval_id: str) -> Approval | None:
        """Back to pending: only for a decision whose audit record could not be
        written, and which therefore nothing may have acted on yet."""
        return self._update(
            approval_id,
            [
                table.c.status.in_([ApprovalStatus.APPROVED.value, ApprovalStatus.DENIED.value]),
                table.c.decision_seq.is_(None),
                table.c.execution_state == ExecutionState.NONE.value,
            ],
            {
                "status": ApprovalStatus.PENDING.value,
                "decided_by": None,
                "decided_at": None,
                "decision_reason": None,
                "channel": None,
            },
        )

    def expire(self, approval_id: str) -> Approval | None:
        """pending → expired, once, after ``expires_at``."""
        return self._update(
            approval_id,
            [
                table.c.status == ApprovalStatus.PENDING.value,
                table.c.expires_at <= sa.bindparam("now"),
            ],
            {
                "status": ApprovalStatus.EXPIRED.value,
                "decided_by": EXPIRY_DECIDER,
                "decided_at": sa.bindparam("now"),
                "channel": "system",
            },
        )

    def cancel(self, approval_id: str, *, by: str, reason: str) -> Approval | None:
        """pending → cancelled (e.g. its request could not be audited)."""
        return self._update(
            approval_id,
            [table.c.status == ApprovalStatus.PENDING.value],
            {
                "status": ApprovalStatus.CANCELLED.value,
                "decided_by": by,
                "decision_reason": reason,
                "decided_at": sa.bindparam("now"),
                "channel": "system",
            },
        )

    def claim(self, approval_id: str, request_id: str) -> Approval | None:
        """The one execution of an approved call: none → running, for one request."""
        return self._update(
            approval_id,
            [
                table.c.status == ApprovalStatus.APPROVED.value,
                table.c.execution_state == ExecutionState.NONE.value,
                table.c.decision_seq.is_not(None),
                table.c.expires_at > sa.bindparam("now"),
            ],
            {"execution_state": ExecutionState.RUNNING.value, "execution_request_id": request_id},
        )

    def finish(self, approval_id: str, request_id: str, outcome: dict[str, Any]) -> Approval | None:
        """running → done with the recorded outcome, by the request that claimed it."""
        return self._update(
            approval_id,
            [
                table.c.execution_state == ExecutionState.RUNNING.value,
                table.c.execution_request_id == request_id,
            ],
            {"execution_state": ExecutionState.DONE.value, "outcome": outcome},
        )

    def _update(
        self, approval_id: str, conditions: list[Any], values: dict[str, Any]
    ) -> Approval | None:
        with exclusive_transaction(self._engine, APPROVALS_LOCK_KEY) as conn:
            now = self._now(conn)
            statement = (
                sa.update(table)
                .where(table.c.id == approval_id, *conditions)
                .values(**values, version=_next_version(conn))
            )
            if conn.execute(statement, {"now": now}).rowcount != 1:
                return None
            # A decided approval may release a run waiting for it: idle executor
            # workers of every process look (docs/decisions/0042).
            self._dialect.announce(conn)
            row = conn.execute(sa.select(table).where(table.c.id == approval_id)).one()
            return _approval(row)


def _next_version(conn: Connection) -> int:
    # Safe only under APPROVALS_LOCK_KEY: no other writer can take the same number.
    current = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.version), 0)))
    return int(current) + 1


def _seconds_between(start: str, end: str) -> float:
    return (parse_time(end) - parse_time(start)).total_seconds()


def _row(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "status": approval.status.value,
        "requester_sub": approval.requester_sub,
        "requester_iss": approval.requester_iss,
        "requester": approval.requester_identity.key,
        "requester_act_chain": [a.to_dict() for a in approval.requester_act_chain],
        "tool": approval.tool,
        "definition_hash": approval.definition_hash,
        "arguments_hash": approval.arguments_hash,
        "arguments_display": approval.arguments_display,
        "reasons": list(approval.reasons),
        "approvers": list(approval.approvers),
        "request_id": approval.request_id,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "decision_reason": approval.decision_reason,
        "channel": approval.channel,
        "execution_state": approval.execution_state.value,
        "execution_request_id": approval.execution_request_id,
        "outcome": approval.outcome,
        "request_seq": approval.request_seq,
        "decision_seq": approval.decision_seq,
        "version": approval.version,
    }


def _approval(row: sa.Row[Any]) -> Approval:
    m = row._mapping
    return Approval(
        id=m["id"],
        status=ApprovalStatus(m["status"]),
        requester_sub=m["requester_sub"],
        requester_iss=m["requester_iss"],
        requester_act_chain=tuple(
            Actor(a["sub"], a.get("iss")) for a in m["requester_act_chain"] or []
        ),
        tool=m["tool"],
        definition_hash=m["definition_hash"],
        arguments_hash=m["arguments_hash"],
        arguments_display=m["arguments_display"],
        reasons=tuple(m["reasons"] or ()),
        approvers=tuple(m["approvers"] or ()),
        request_id=m["request_id"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        decided_by=m["decided_by"],
        decided_at=m["decided_at"],
        decision_reason=m["decision_reason"],
        channel=m["channel"],
        execution_state=ExecutionState(m["execution_state"]),
        execution_request_id=m["execution_request_id"],
        outcome=m["outcome"],
        request_seq=m["request_seq"],
        decision_seq=m["decision_seq"],
        version=int(m["version"]),
    )
