"""Erasing every copy the gateway holds of one call or one run (a data subject's
request), not just one audit entry.

A call's arguments and result are written down in several places: its own audit
entries (``call.attempt``, ``call.decision`` with the recorded policy input, which is
also what `gateway policy replay` replays, ``call.outcome``), the approval it asked for
(its audit entries; the approvals row's displayed arguments, reasons and the recorded
outcome that retries replay), the request that finally executed an approved call, and
for a step of a run the run's step row (its output and the tool's whole result
document, kept for `gateway runs replay`) and attempts; a call held for approval and
answered as an MCP task, the run that executes it (its inputs) and, for a task
answered at once, the result the task keeps. A run adds its own entries
(``run.*``, ``step.*``: plan and inputs) and the run row. `scope_of_request` and
`scope_of_run` find all of it; `erase` removes it in one transaction with the audit
log's ``erasure`` entries (`gateway.audit.erasure.erase_payloads`), so the log keeps
verifying and either every copy goes or none does.

What stays, on purpose: leaves, hashes and commitments (the log's integrity), who
owns a run and its status, an approval's binding (principal, tool, argument hash) and
decision, so that an erased approved call is still never executed twice. Schedules,
exports already taken, logs and checkpoints published elsewhere are outside
(docs/audit.md, "What erasure removes").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from gateway.audit.erasure import Erasure, ErasureRefused, erase_payloads
from gateway.redaction import replace_at
from gateway.store.tables import (
    approvals,
    audit_entries,
    mcp_tasks,
    run_steps,
    runs,
    step_attempts,
)
from gateway.tlog.chain import ERASURE_KIND

ERASED = "[erased]"
FINISHED = ("succeeded", "failed", "cancelled")
# Where a stored plan holds what its submitter chose (the runs row keeps the rest, so
# that the run can still be shown).
_PLAN_VALUES = ("/steps/*/arguments", "/steps/*/compensate/arguments", "/steps/*/when")


@dataclass
class ErasureScope:
    """The ids whose copies are erased: requests (their audit entries, and run steps
    they were attempts of), approvals (entries and rows) and runs (entries and rows)."""

    requests: set[str] = field(default_factory=set)
    approvals: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)

    @property
    def refs(self) -> set[str]:
        return self.requests | self.approvals | self.runs


@dataclass(frozen=True)
class ErasureReport:
    scope: ErasureScope
    erased: list[Erasure]
    rows: dict[str, int]  # table name -> rows changed


def scope_of_request(engine: Engine, request_id: str) -> ErasureScope:
    """One call: its request, the approval it asked for (and the request that
    executed that approval), and the step it was an attempt of. Raises
    ErasureRefused for an unknown request or one of a run still active."""
    with engine.connect() as conn:
        scope = ErasureScope(requests={request_id})
        _add_approvals_of(conn, scope)
        _add_held_runs(conn, scope)
        known = conn.scalar(sa.select(sa.func.count()).where(audit_entries.c.ref.in_(scope.refs)))
        if not known:
            raise ErasureRefused(f"no audit entry names request {request_id!r}")
        for run_id, status in conn.execute(
            sa.select(runs.c.id, runs.c.status)
            .join(step_attempts, step_attempts.c.run_id == runs.c.id)
            .where(step_attempts.c.request_id == request_id)
        ):
            _refuse_active(run_id, status)
    return scope


def scope_of_run(engine: Engine, run_id: str) -> ErasureScope:
    """A finished run: the run, every request its steps (and compensations) made,
    every approval those and its approval gates asked for. Raises ErasureRefused for
    an unknown run or one still active."""
    with engine.connect() as conn:
        status = conn.scalar(sa.select(runs.c.status).where(runs.c.id == run_id))
        if status is None:
            raise ErasureRefused(f"no run {run_id!r}")
        _refuse_active(run_id, status)
        scope = ErasureScope(runs={run_id})
        scope.requests |= set(
            conn.scalars(
                sa.select(step_attempts.c.request_id).where(
                    step_attempts.c.run_id == run_id, step_attempts.c.request_id.is_not(None)
                )
            )
        )
        scope.approvals |= set(
            conn.scalars(
                sa.select(run_steps.c.approval_id).where(
                    run_steps.c.run_id == run_id, run_steps.c.approval_id.is_not(None)
                )
            )
        )
        _add_approvals_of(conn, scope)
    return scope


def erase(engine: Engine, origin: str, scope: ErasureScope, reason: str) -> ErasureReport:
    """Erases every audit payload of ``scope`` (with an ``erasure`` entry each) and the
    copies in the approvals and run tables, in one transaction."""
    with engine.connect() as conn:
        seqs = list(
            conn.scalars(
                sa.select(audit_entries.c.seq).where(
                    audit_entries.c.ref.in_(scope.refs), audit_entries.c.kind != ERASURE_KIND
                )
            )
        )
    rows: dict[str, int] = {}

    def tables(conn: Connection) -> None:
        rows.update(_erase_rows(conn, scope))

    erased = erase_payloads(engine, origin, seqs, reason, alongside=tables)
    return ErasureReport(scope, erased, rows)


def _refuse_active(run_id: str, status: str) -> None:
    if status not in FINISHED:
        raise ErasureRefused(
            f"run {run_id} is {status}: erase it once it has finished "
            f"(`gateway runs cancel {run_id}` ends it)"
        )


def _add_approvals_of(conn: Connection, scope: ErasureScope) -> None:
    """The approvals the scope's requests asked for, and the requests that executed
    the scope's approvals (a held call runs in the request of the agent's retry)."""
    found = conn.execute(
        sa.select(approvals.c.id, approvals.c.execution_request_id).where(
            sa.or_(
                approvals.c.request_id.in_(scope.requests),
                approvals.c.id.in_(scope.approvals),
            )
        )
    ).all()
    for approval_id, executed_by in found:
        scope.approvals.add(approval_id)
        if executed_by:
            scope.requests.add(executed_by)


def _add_held_runs(conn: Connection, scope: ErasureScope) -> None:
    """The runs that execute the scope's held calls (a call held for approval and
    answered as an MCP task, `gateway.executor.held_calls`): their inputs are the
    call's arguments. Refused while one is still active."""
    # Waiting, its step names the approval; once it ran, its attempt names the
    # request that executed the approval (`_add_approvals_of` added it).
    waiting = sa.select(run_steps.c.run_id).where(run_steps.c.approval_id.in_(scope.approvals))
    attempted = sa.select(step_attempts.c.run_id).where(
        step_attempts.c.request_id.in_(scope.requests)
    )
    found = conn.execute(
        sa.select(runs.c.id, runs.c.status, runs.c.provenance).where(
            sa.or_(runs.c.id.in_(waiting), runs.c.id.in_(attempted))
        )
    ).all()
    for run_id, status, provenance in found:
        if isinstance(provenance, dict) and provenance.get("held_call"):
            _refuse_active(run_id, status)
            scope.runs.add(run_id)


def _erase_rows(conn: Connection, scope: ErasureScope) -> dict[str, int]:
    changed = {"approvals": 0, "runs": 0, "run_steps": 0, "step_attempts": 0}
    # A task-augmented call answered at once keeps its result for the task's life.
    changed["mcp_tasks"] = conn.execute(
        mcp_tasks.update()
        .where(
            sa.or_(
                mcp_tasks.c.request_id.in_(scope.requests),
                mcp_tasks.c.approval_id.in_(scope.approvals),
            ),
            mcp_tasks.c.kind == "result",
        )
        .values(result=None)
    ).rowcount
    for row in conn.execute(sa.select(approvals).where(approvals.c.id.in_(scope.approvals))):
        conn.execute(
            approvals.update()
            .where(approvals.c.id == row.id)
            .values(
                arguments_display=ERASED,
                reasons=[ERASED],
                decision_reason=None if row.decision_reason is None else ERASED,
                outcome=_erased_outcome(row.outcome),
            )
        )
        changed["approvals"] += 1
    for row in conn.execute(sa.select(runs).where(runs.c.id.in_(scope.runs))):
        conn.execute(
            runs.update()
            .where(runs.c.id == row.id)
            .values(
                plan=replace_at(row.plan, _PLAN_VALUES, ERASED),
                inputs=ERASED,
                error=None if row.error is None else _erased_error(row.error),
            )
        )
        changed["runs"] += 1
    attempts_of = step_attempts.c.request_id.in_(scope.requests)
    steps = sa.select(step_attempts.c.run_id, step_attempts.c.step_id).where(attempts_of)
    step_filter = sa.or_(
        run_steps.c.run_id.in_(scope.runs),
        sa.tuple_(run_steps.c.run_id, run_steps.c.step_id).in_(steps),
    )
    changed["run_steps"] = conn.execute(
        run_steps.update()
        .where(step_filter)
        .values(
            arguments=None,
            output=None,
            result=None,  # the tool's result document, kept for replay (0029)
            error=None,
            decision=None,
            compensation_error=None,
        )
    ).rowcount
    changed["step_attempts"] = conn.execute(
        step_attempts.update()
        .where(sa.or_(step_attempts.c.run_id.in_(scope.runs), attempts_of))
        .values(error=None)
    ).rowcount
    return changed


def _erased_outcome(outcome: Any) -> Any:
    """What a retry of an erased approved call replays: that it ran, not what it got."""
    if not isinstance(outcome, dict):
        return outcome
    return {
        "status": outcome.get("status"),
        "request_id": outcome.get("request_id"),
        "erased": True,
    }


def _erased_error(error: Any) -> Any:
    code = error.get("code") if isinstance(error, dict) else None
    return {"code": code, "message": ERASED}
