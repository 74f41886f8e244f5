"""Scenario replay (``gateway runs replay``): a recorded run again, against a candidate
workflow and/or policy, with no upstream called.

The candidate plan is walked as `gateway.workflows.simulate` walks a scenario: the
``plan/submit`` decision, then every tool step decided as a ``tools/call`` (as the
submitter through the executor, with what policy saw of the tool when the run called
it, else its pinned definition), every result taken from the run's recording
(`gateway.workflows.recorded_run`). A step's recording is used only when it is proven
and is for this very call: the same step, the same tool, the same arguments (compared
as the recording rule, `gateway.recording`, stored them). Otherwise the step fails in
the replay, "recording not verified" or "diverged, no recording", and says why.

What differs from the recorded run is reported per step: steps added or removed, and
for the others status, arguments, decision, whether an approval is needed, output and
error. Limits, as for scenarios: no retries, timers or compensation; approvals count
as given; once a step fails no further step runs (one that ran beside it in the
recorded run shows as not run); a call a human denied has no recording.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.executor.plan import Plan
from gateway.executor.records import executor_principal, shown_output
from gateway.policy import build_input
from gateway.recording import recordable_arguments
from gateway.types import Decision
from gateway.workflows.pinned_tools import PinnedTools
from gateway.workflows.recorded_run import Found, RecordedRun
from gateway.workflows.scenario import Recorded
from gateway.workflows.simulate import simulate

Decide = Callable[[dict[str, Any]], Awaitable[Decision]]

NOT_VERIFIED = "recording_not_verified"
NO_RECORDING = "no_recording"
# A recorded step that never finished reads, for comparing, as not run.
_NOT_RUN = ("pending", "cancelled", "waiting", "running", "not_run")
_DECISION_KEYS = ("allow", "require_approval", "rule")


async def replay_run(
    recorded: RecordedRun,
    plan: Plan,
    workflow: dict[str, Any] | None,
    decide: Decide,
    pinned: PinnedTools,
    *,
    request_id: str,
) -> dict[str, Any]:
    """The report: what the candidate ``plan`` (of ``workflow``, a
    `WorkflowRef.to_policy` document or None for an ad hoc plan) and the policy behind
    ``decide`` do with the recorded run, and what differs."""
    tools = pinned.resources(plan.tools())
    tools.update({t: e for t, e in recorded.tool_entries.items() if t in plan.tools()})
    submit = build_input(
        principal=recorded.principal,
        action="plan/submit",
        request_id=request_id,
        transport="rest",
        resource={
            "plan": plan.to_json(),
            "plan_hash": plan.plan_hash,
            "tools": tools,
            "schedule_id": None,
            "workflow": workflow,
        },
        arguments=recorded.inputs,
        run_id=recorded.run_id,
    )
    submitted = await decide(submit)
    decided: dict[str, Decision] = {}
    if submitted.allow:
        acting = executor_principal(recorded.principal)

        async def decide_step(tool: str, arguments: dict[str, Any], step_id: str) -> Any:
            resource = tools.get(tool, {"tool": tool})
            decision = await decide(
                build_input(
                    principal=acting,
                    action="tools/call",
                    request_id=request_id,
                    transport="executor",
                    resource=resource,
                    arguments=arguments,
                    run_id=recorded.run_id,
                    step_id=step_id,
                )
            )
            decided[step_id] = decision
            return decision

        outcome = await simulate(plan, recorded.inputs, _look_up(recorded), decide_step)
    else:
        reasons = "; ".join(submitted.reasons) or "denied by policy"
        error = {"code": "plan_refused", "message": f"plan refused: {reasons}"}
        outcome = {"status": "refused", "error": error, "steps": {}}
    return _report(recorded, plan, workflow, submitted, _shown(recorded, outcome, decided))


def _look_up(recorded: RecordedRun) -> Any:
    def look_up(step_id: str, tool: str, arguments: dict[str, Any], _decision: Any) -> Recorded:
        step = recorded.steps.get(step_id)
        if step is None or step.kind != "tool" or step.tool != tool:
            return _miss(NO_RECORDING, f"the recorded run made no call of {tool} as {step_id}")
        if step.found is Found.NOT_VERIFIED:
            return _miss(NOT_VERIFIED, step.why)
        if step.found is Found.NO_RECORDING:
            return _miss(NO_RECORDING, step.why)
        if recordable_arguments(arguments, step.recorded_decision()) != step.arguments:
            return _miss(NO_RECORDING, "the recorded call had other arguments")
        if step.call_error is not None:
            return Recorded(error=step.call_error)
        return Recorded(output=step.output)

    return look_up


def _miss(code: str, why: str) -> Recorded:
    words = "recording not verified" if code == NOT_VERIFIED else "diverged, no recording"
    return Recorded(error={"code": code, "message": f"{words}: {why}"})


def _shown(
    recorded: RecordedRun, outcome: dict[str, Any], decided: dict[str, Decision]
) -> dict[str, Any]:
    """The replayed steps as they may be shown: arguments by the recording rule, with
    the recorded decision where the step has one (so equal calls compare equal), else
    the candidate's; outputs redacted by both decisions' ``/output`` pointers."""
    steps = {}
    for step_id, state in outcome["steps"].items():
        state = dict(state)
        step = recorded.steps.get(step_id)
        candidate = decided.get(step_id)
        shown_by = step.recorded_decision() if step and step.decision else candidate
        if "arguments" in state:
            state["arguments"] = recordable_arguments(state["arguments"], shown_by)
        pointers = list(step.redact if step else ()) + list(
            candidate.obligations.redact if candidate else ()
        )
        state["output"] = shown_output(state.get("output"), pointers)
        steps[step_id] = state
    return {**outcome, "steps": steps}


def _report(
    recorded: RecordedRun,
    plan: Plan,
    workflow: dict[str, Any] | None,
    submitted: Decision,
    outcome: dict[str, Any],
) -> dict[str, Any]:
    before = (recorded.submitted or {}).get("decision") or {}
    plan_submit = {}
    if _decision(before) != _decision(submitted.to_dict()):
        plan_submit = {"recorded": _decision(before), "replayed": _decision(submitted.to_dict())}
    steps = _steps(recorded, plan, outcome["steps"])
    recordings = {
        s.step_id: s.found.value + ("" if s.found is Found.VERIFIED else f": {s.why}")
        for s in sorted(recorded.steps.values(), key=lambda s: s.step_id)
        if s.kind == "tool"
    }
    status = {
        "recorded": _status(recorded.status, recorded.error),
        "replayed": _status(outcome["status"], outcome.get("error")),
    }
    differences = {
        k: v
        for k, v in {
            "status": status if status["recorded"] != status["replayed"] else None,
            "plan_submit": plan_submit or None,
            "steps": steps or None,
        }.items()
        if v
    }
    return {
        "run_id": recorded.run_id,
        "recorded": {
            **status["recorded"],
            "workflow": recorded.workflow,
            "plan_hash": recorded.provenance.get("plan_hash"),
            "policy": {
                "engine": recorded.provenance.get("policy_engine"),
                "revision": recorded.provenance.get("policy_revision"),
            },
        },
        "replayed": {
            **status["replayed"],
            "workflow": workflow,
            "plan_hash": plan.plan_hash,
            "policy": {"engine": submitted.engine, "revision": submitted.revision},
        },
        "recordings": recordings,
        "unverified": sorted(
            s.step_id for s in recorded.steps.values() if s.found is Found.NOT_VERIFIED
        ),
        "differences": differences,
        "steps": outcome["steps"],
    }


def _status(status: str, error: Any) -> dict[str, Any]:
    return {"status": status, "error": error.get("code") if isinstance(error, dict) else None}


def _decision(decision: dict[str, Any]) -> dict[str, Any] | None:
    if not decision:
        return None
    return {k: decision.get(k) for k in _DECISION_KEYS}


def _steps(recorded: RecordedRun, plan: Plan, replayed: dict[str, Any]) -> dict[str, Any]:
    before_ids = [s["id"] for s in recorded.plan["steps"]]
    after_ids = [s.id for s in plan.steps]
    out: dict[str, Any] = {}
    added = [s for s in after_ids if s not in before_ids]
    removed = [s for s in before_ids if s not in after_ids]
    if added:
        out["added"] = added
    if removed:
        out["removed"] = removed
    changed = {}
    tool_of = {s.id: getattr(s, "tool", None) for s in plan.steps}
    for step_id in [s for s in after_ids if s in before_ids]:
        step = recorded.steps.get(step_id)
        after = replayed.get(step_id, {"status": "not_run"})
        if step is None:
            continue
        fields: dict[str, Any] = {}
        _put(fields, "tool", step.tool, tool_of.get(step_id))
        _put(fields, "status", _state(step.status), _state(after["status"]))
        # What a call was and got, only where both runs made it (a step one of them
        # skipped or never reached differs in status alone).
        if step.kind == "tool" and step.decision is not None and "decision" in after:
            _put(fields, "arguments", step.arguments, after.get("arguments"))
            _put(fields, "decision", _decision(step.decision), after["decision"])
            _put(fields, "output", step.shown_output, after.get("output"))
        _put(fields, "approval_needed", step.approval_needed, bool(after.get("approval_needed")))
        _put(fields, "error", _code(step.error), _code(after.get("error")))
        if fields:
            changed[step_id] = fields
    if changed:
        out["changed"] = changed
    return out


def _put(fields: dict[str, Any], name: str, recorded: Any, replayed: Any) -> None:
    if recorded != replayed:
        fields[name] = {"recorded": recorded, "replayed": replayed}


def _state(status: str) -> str:
    return "not_run" if status in _NOT_RUN else status


def _code(error: Any) -> str | None:
    return error.get("code") if isinstance(error, dict) else None
