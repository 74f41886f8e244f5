"""Capturing a run as a scenario (``gateway runs capture``): its inputs, who ran it,
its proven tool results and an expected outcome, in the format ``gateway workflows
test`` reads (`gateway.workflows.scenario`).

Only what may be recorded is captured, as it was recorded: the inputs as the
``run.submitted`` entry holds them (redacted by the ``plan/submit`` decision,
`gateway.recording`), outputs redacted by their decisions' ``/output`` pointers. A
result is captured only when it is proven against the audit log; an erased one never
is (it is left out, and the scenario says so). A recording that does not verify
refuses the capture: a scenario must not be built on a record someone changed.

The file leaves the gateway: erasing the run later (``gateway audit erase``) does not
reach it.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.executor.records import shown_output
from gateway.workflows.recorded_run import Found, RecordedRun, RecordingNotUsable

Expect = Literal["succeeded", "recorded"]

HEADER = (
    "# Captured from run {run_id} by `gateway runs capture`. This file is outside the\n"
    "# gateway's erasure scope: `gateway audit erase` does not reach copies like it.\n"
)


def capture_scenario(recorded: RecordedRun, *, expect: Expect = "succeeded") -> dict[str, Any]:
    """The scenario document. ``expect``: ``succeeded`` (a regression case: the run
    should succeed, whatever it did) or ``recorded`` (the run's own status, error,
    step statuses and approvals)."""
    unverified = sorted(s.step_id for s in recorded.steps.values() if s.found is Found.NOT_VERIFIED)
    if unverified:
        raise RecordingNotUsable(
            f"run {recorded.run_id}: recording not verified for step(s) "
            + ", ".join(f"{s} ({recorded.steps[s].why})" for s in unverified),
            details={"run_id": recorded.run_id, "steps": unverified},
        )
    submitted = recorded.submitted
    if submitted is None or not isinstance(submitted.get("inputs"), dict):
        raise RecordingNotUsable(
            f"run {recorded.run_id}: its run.submitted entry is erased or missing, so its "
            "inputs as they may be recorded are unknown",
            details={"run_id": recorded.run_id},
        )
    results: dict[str, Any] = {}
    left_out = []
    for step in sorted(recorded.steps.values(), key=lambda s: s.step_id):
        if step.kind != "tool":
            continue
        if step.found is not Found.VERIFIED:
            if step.status in ("succeeded", "failed"):
                left_out.append(f"{step.step_id} ({step.why})")
            continue
        if step.call_error is not None:
            results[step.step_id] = {"error": step.call_error}
        else:
            results[step.step_id] = {"output": shown_output(step.output, list(step.redact))}
    description = f"captured from run {recorded.run_id} ({recorded.status})"
    if left_out:
        description += "; no result for " + ", ".join(left_out)
    return {
        "description": description,
        "inputs": submitted["inputs"],
        "subject": {"sub": recorded.principal.sub, "roles": list(recorded.principal.roles)},
        "results": results,
        "expect": _expectation(recorded, expect),
    }


def _expectation(recorded: RecordedRun, expect: Expect) -> dict[str, Any]:
    if expect == "succeeded":
        return {"status": "succeeded"}
    status = recorded.status if recorded.status in ("succeeded", "failed") else "failed"
    out: dict[str, Any] = {"status": status}
    code = (recorded.error or {}).get("code")
    if status == "failed" and code:
        out["error"] = code
    out["steps"] = {
        s.step_id: s.status
        for s in sorted(recorded.steps.values(), key=lambda s: s.step_id)
        if s.status in ("succeeded", "failed", "skipped")
    }
    out["approvals"] = sorted(s.step_id for s in recorded.steps.values() if s.approval_needed)
    return out
