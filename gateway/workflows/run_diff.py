"""Comparing two runs (``gateway runs diff RUN_A RUN_B``): what ran, under which
versions, policy, tool contracts and approvals, and step by step what differed.

Works on two run views as the REST API returns them (`gateway.executor.records.run_view`),
so it compares only what both readers may see (arguments and outputs as recorded,
redacted). Ids that differ by nature (run, request and approval ids, times) are not
differences; whether a step needed an approval, and who gave it, is.
"""

from __future__ import annotations

from typing import Any

# A step's fields compared as they are.
_STEP_FIELDS = ("tool", "status", "arguments", "output")


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The differences from run ``a`` to run ``b``; parts without any are left out
    (``{}``: the runs are the same in everything compared)."""
    out: dict[str, Any] = {}
    prov_a, prov_b = a.get("provenance") or {}, b.get("provenance") or {}
    _put(out, "status", _outcome(a), _outcome(b))
    _put(out, "workflow", prov_a.get("workflow"), prov_b.get("workflow"))
    _put(out, "plan_hash", a.get("plan_hash"), b.get("plan_hash"))
    _put(out, "policy", _policy(prov_a), _policy(prov_b))
    _put(out, "gateway_version", prov_a.get("gateway_version"), prov_b.get("gateway_version"))
    _put(out, "inputs", a.get("inputs"), b.get("inputs"))
    tools = _mapping(prov_a.get("tools") or {}, prov_b.get("tools") or {})
    if tools:
        out["tools"] = tools
    approvals = _approvals(a, b)
    if approvals:
        out["approvals"] = approvals
    steps = _steps(a.get("steps") or [], b.get("steps") or [])
    if steps:
        out["steps"] = steps
    return out


def _put(out: dict[str, Any], key: str, before: Any, after: Any) -> None:
    if before != after:
        out[key] = {"a": before, "b": after}


def _outcome(run: dict[str, Any]) -> dict[str, Any]:
    error = run.get("error") or {}
    return {"status": run.get("status"), "error": error.get("code")}


def _policy(provenance: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": provenance.get("policy_engine"),
        "revision": provenance.get("policy_revision"),
    }


def _mapping(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {
        "added": {k: b[k] for k in sorted(b.keys() - a.keys())},
        "removed": {k: a[k] for k in sorted(a.keys() - b.keys())},
        "changed": {k: {"a": a[k], "b": b[k]} for k in sorted(a.keys() & b.keys()) if a[k] != b[k]},
    }
    return {k: v for k, v in out.items() if v}


def _approvals(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "plan_review", _review(a), _review(b))
    steps_a, steps_b = _by_id(a.get("steps") or []), _by_id(b.get("steps") or [])
    for step_id in [s for s in steps_a if s in steps_b]:
        before, after = _step_approval(steps_a[step_id]), _step_approval(steps_b[step_id])
        if before != after:
            out.setdefault("steps", {})[step_id] = {"a": before, "b": after}
    return out


def _review(run: dict[str, Any]) -> str | None:
    review = run.get("review")
    return review.get("status") if review else None


def _step_approval(step: dict[str, Any]) -> dict[str, Any] | None:
    """Whether the step needed an approval and who gave it (a gate names its approver)."""
    output = step.get("output") if step.get("kind") == "approval" else None
    needed = bool(step.get("approval_id")) or step.get("kind") == "approval"
    decision = step.get("decision") or {}
    if decision.get("require_approval"):
        needed = True
    if not needed:
        return None
    return {"approved_by": output.get("approved_by") if isinstance(output, dict) else None}


def _by_id(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in steps}


def _steps(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    steps_a, steps_b = _by_id(a), _by_id(b)
    out: dict[str, Any] = {}
    added = [s for s in steps_b if s not in steps_a]
    removed = [s for s in steps_a if s not in steps_b]
    changed: dict[str, Any] = {}
    for step_id in [s for s in steps_a if s in steps_b]:
        before, after = steps_a[step_id], steps_b[step_id]
        fields = {
            name: {"a": before.get(name), "b": after.get(name)}
            for name in _STEP_FIELDS
            if before.get(name) != after.get(name)
        }
        for name, pick in (("decision", _decision), ("error", _error_code)):
            if pick(before) != pick(after):
                fields[name] = {"a": pick(before), "b": pick(after)}
        attempts_a, attempts_b = len(before.get("attempts") or []), len(after.get("attempts") or [])
        if attempts_a != attempts_b:
            fields["attempts"] = {"a": attempts_a, "b": attempts_b}
        if fields:
            changed[step_id] = fields
    if added:
        out["added"] = added
    if removed:
        out["removed"] = removed
    if changed:
        out["changed"] = changed
    return out


def _decision(step: dict[str, Any]) -> dict[str, Any] | None:
    decision = step.get("decision")
    if not decision:
        return None
    return {k: decision.get(k) for k in ("allow", "require_approval", "rule")}


def _error_code(step: dict[str, Any]) -> str | None:
    error = step.get("error")
    return error.get("code") if isinstance(error, dict) else None
