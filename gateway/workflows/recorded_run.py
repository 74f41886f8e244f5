"""A finished run as recorded, each tool step's result checked against the audit log.

`gateway runs replay` and `gateway runs capture` use a run's recorded tool results
instead of calling any upstream. A recording is used only when it is proven: the
step's result document (``run_steps.result``, docs/decisions/0029) must hash to the
``result_sha256`` of its call's ``call.outcome`` entry, and that entry's payload must
be the one its leaf commits to. A step's call that failed without a result (an
upstream error) is proven by the ``call.outcome`` entry alone, which holds the error.

Per tool step, what is found is one of:

- ``verified``: the result (or error) is the one the audit log holds;
- ``not verified``: the step's row and the audit log disagree (a result or output
  changed after the fact, an entry whose payload does not match its leaf, a result
  with no ``call.outcome``): never used;
- ``no recording``: nothing to use: the step was never forwarded (denied, waiting,
  not reached), its payload or result was erased, or it was recorded before results
  were kept.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from gateway.audit import read_entries
from gateway.canonical import sha256_hex
from gateway.errors import GatewayError
from gateway.executor.records import principal_from_json, shown_output
from gateway.executor.steps import classify, step_output
from gateway.executor.store import FINISHED, RunStore
from gateway.tlog.leaf import commitment_of_jcs, parse_leaf
from gateway.types import Decision, Obligations, Outcome, OutcomeStatus, Principal, ToolResult


class RecordingNotUsable(GatewayError):
    """The run cannot be replayed or captured at all (unknown, still running, erased)."""

    code = "recording_not_usable"
    http_status = 409


class Found(enum.StrEnum):
    VERIFIED = "verified"
    NOT_VERIFIED = "not verified"
    NO_RECORDING = "no recording"


@dataclass(frozen=True)
class RecordedStep:
    """One step of the plan as the run recorded it."""

    step_id: str
    kind: str
    tool: str | None
    status: str
    arguments: Any  # as stored: redacted by the step's decision (gateway.recording)
    decision: dict[str, Any] | None
    redact: tuple[str, ...]
    error: dict[str, Any] | None
    shown_output: Any  # what readers see (outputs redacted by /output pointers)
    found: Found = Found.NO_RECORDING
    why: str = "never forwarded"
    # From the verified recording (the output derived from the proven result document,
    # or the proven error); None unless `found` is VERIFIED.
    output: Any = None
    call_error: dict[str, Any] | None = None
    tool_entry: dict[str, Any] | None = None  # what policy saw of the tool (call.decision)

    @property
    def approval_needed(self) -> bool:
        decision = self.decision or {}
        return self.kind == "approval" or bool(
            decision.get("allow") and decision.get("require_approval")
        )

    def recorded_decision(self) -> Decision | None:
        """The step's decision, enough of it for `gateway.recording` to redact with."""
        if self.decision is None:
            return None
        return Decision(
            allow=bool(self.decision.get("allow")),
            require_approval=bool(self.decision.get("require_approval")),
            reasons=tuple(self.decision.get("reasons") or ()),
            obligations=Obligations(redact=self.redact),
            rule=self.decision.get("rule"),
            engine=str(self.decision.get("engine")),
            revision=self.decision.get("revision"),
        )


@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    status: str
    error: dict[str, Any] | None
    plan: dict[str, Any]
    inputs: dict[str, Any]  # as the run got them (replay renders arguments from them)
    principal: Principal
    provenance: dict[str, Any]
    steps: dict[str, RecordedStep]
    submitted: dict[str, Any] | None  # the run.submitted payload (plan/submit decision)
    tool_entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def workflow(self) -> dict[str, Any] | None:
        return self.provenance.get("workflow")


def load_recorded_run(database: sa.Engine, run_id: str) -> RecordedRun:
    """The run, every step checked against the audit log. Raises `RecordingNotUsable`
    for an unknown run, one not finished, or one erased."""
    store = RunStore(database)
    row = store.run_row(run_id)
    if row is None:
        raise RecordingNotUsable(f"no run {run_id!r}", details={"run_id": run_id})
    if row.status not in FINISHED:
        raise RecordingNotUsable(
            f"run {run_id} is {row.status}: replay or capture it once it has finished",
            details={"run_id": run_id},
        )
    if not isinstance(row.inputs, dict):
        raise RecordingNotUsable(
            f"run {run_id} was erased: nothing of it can be replayed or captured",
            details={"run_id": run_id},
        )
    last_request: dict[str, str] = {}
    for attempt in sorted(store.attempt_rows(run_id), key=lambda a: a.attempt):
        if attempt.purpose == "step" and attempt.request_id:
            last_request[attempt.step_id] = attempt.request_id
    tools = {s["id"]: s.get("tool") for s in row.plan["steps"]}
    entries: dict[str, dict[str, Any]] = {}
    steps = {}
    for step in store.step_rows(run_id):
        recorded = RecordedStep(
            step_id=step.step_id,
            kind=step.kind,
            tool=tools.get(step.step_id),
            status=step.status,
            arguments=step.arguments,
            decision=step.decision,
            redact=tuple(step.redact or ()),
            error=step.error,
            shown_output=shown_output(step.output, step.redact),
        )
        request_id = last_request.get(step.step_id)
        if step.kind == "tool" and request_id is not None:
            recorded, entry = _check(database, recorded, step, request_id)
            if entry is not None and recorded.tool:
                entries.setdefault(recorded.tool, entry)
        steps[step.step_id] = recorded
    submitted = read_entries(database, kind="run.submitted", ref=run_id, limit=1)
    return RecordedRun(
        run_id=run_id,
        status=row.status,
        error=row.error,
        plan=row.plan,
        inputs=row.inputs,
        principal=principal_from_json(row.principal),
        provenance=row.provenance or {},
        steps=steps,
        submitted=submitted[0].payload if submitted else None,
        tool_entries=entries,
    )


def _check(
    database: sa.Engine, recorded: RecordedStep, row: Any, request_id: str
) -> tuple[RecordedStep, dict[str, Any] | None]:
    """The step with what its last attempt's call proves, and what policy saw of its
    tool."""
    by_kind = {e.kind: e for e in read_entries(database, ref=request_id)}
    decided = by_kind.get("call.decision")
    policy_input = (decided.payload or {}).get("input") if decided else None
    entry = policy_input.get("resource") if isinstance(policy_input, dict) else None
    entry = entry if isinstance(entry, dict) and entry.get("tool") else None

    def found(state: Found, why: str, **values: Any) -> tuple[RecordedStep, dict | None]:
        return replace(recorded, found=state, why=why, tool_entry=entry, **values), entry

    outcome = by_kind.get("call.outcome")
    if outcome is None:
        if row.result is not None or row.status == "succeeded":
            return found(Found.NOT_VERIFIED, f"no call.outcome in the audit log for {request_id}")
        return found(Found.NO_RECORDING, "the call was never forwarded")
    if outcome.payload_jcs is None or outcome.salt is None:
        return found(Found.NO_RECORDING, "erased")
    try:
        committed = parse_leaf(outcome.leaf).commitment
        proven = commitment_of_jcs(outcome.salt, outcome.payload_jcs) == committed
    except (ValueError, GatewayError):
        proven = False
    payload = outcome.payload
    if not proven or payload is None:
        return found(
            Found.NOT_VERIFIED, f"audit entry #{outcome.seq} does not match its leaf's commitment"
        )
    expected = payload.get("result_sha256")
    if expected is None:  # the upstream failed: the entry holds the error itself
        error = payload.get("error")
        if not isinstance(error, dict) or row.result is not None:
            return found(Found.NOT_VERIFIED, f"audit entry #{outcome.seq} records no result")
        return found(Found.VERIFIED, "the call's error, from the audit log", call_error=error)
    if row.result is None:
        why = "erased" if row.arguments is None and row.decision is None else "no result kept"
        return found(Found.NO_RECORDING, why)
    if sha256_hex(row.result) != expected:
        return found(
            Found.NOT_VERIFIED,
            f"the step's result does not hash to result_sha256 of audit entry #{outcome.seq}",
        )
    try:
        result = ToolResult(
            content=list(row.result["content"]),
            structured_content=row.result.get("structured_content"),
            is_error=bool(row.result.get("is_error")),
        )
    except (KeyError, TypeError, AttributeError):  # hashed, yet not a result: damaged
        return found(Found.NOT_VERIFIED, "the step's result is not a tool result")
    called = Outcome(request_id, recorded.tool or "", OutcomeStatus.OK, None, result=result)
    status, error = classify(called)
    if status != "ok":
        return found(Found.VERIFIED, f"audit entry #{outcome.seq}", call_error=error)
    output = step_output(called)
    if row.status == "succeeded" and row.output != output:
        return found(Found.NOT_VERIFIED, "the step's output is not what its result gives")
    return found(Found.VERIFIED, f"audit entry #{outcome.seq}", output=output)
