"""What differs between two published versions of a workflow (``workflows diff A B``).

Each part of the manifest is compared on its own terms: the pinned tools and the
tested policy revisions as sets, the plan step by step (by id: added, removed, and for
a step in both, each field that changed), the rest as whole values.
"""

from __future__ import annotations

from typing import Any

from gateway.workflows.manifest import Manifest


def diff_manifests(a: Manifest, b: Manifest) -> dict[str, Any]:
    """The differences from ``a`` to ``b``; empty parts are left out (``{}``: same)."""
    out: dict[str, Any] = {}
    for field in ("description", "inputs", "approvals"):
        before, after = getattr(a, field), getattr(b, field)
        before = before.model_dump(mode="json") if hasattr(before, "model_dump") else before
        after = after.model_dump(mode="json") if hasattr(after, "model_dump") else after
        if before != after:
            out[field] = {"from": before, "to": after}
    tools = _mapping_diff(a.tools, b.tools)
    if tools:
        out["tools"] = tools
    revisions = {
        "added": sorted(set(b.policy_revisions) - set(a.policy_revisions)),
        "removed": sorted(set(a.policy_revisions) - set(b.policy_revisions)),
    }
    if revisions["added"] or revisions["removed"]:
        out["policy_revisions"] = revisions
    plan = _plan_diff(a.plan, b.plan)
    if plan:
        out["plan"] = plan
    scenarios = _mapping_diff(a.scenarios, b.scenarios, values=False)
    if scenarios:
        out["scenarios"] = scenarios
    return out


def _mapping_diff(a: dict[str, Any], b: dict[str, Any], *, values: bool = True) -> dict[str, Any]:
    changed = {k: {"from": a[k], "to": b[k]} for k in sorted(a.keys() & b.keys()) if a[k] != b[k]}
    out: dict[str, Any] = {
        "added": {k: b[k] for k in sorted(b.keys() - a.keys())}
        if values
        else sorted(b.keys() - a.keys()),
        "removed": sorted(a.keys() - b.keys()),
        "changed": changed if values else sorted(changed),
    }
    return {k: v for k, v in out.items() if v}


def _plan_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted((a.keys() | b.keys()) - {"steps"}):
        if a.get(key) != b.get(key):
            out[key] = {"from": a.get(key), "to": b.get(key)}
    steps_a = {s.get("id"): s for s in a.get("steps", []) if isinstance(s, dict)}
    steps_b = {s.get("id"): s for s in b.get("steps", []) if isinstance(s, dict)}
    steps: dict[str, Any] = {}
    added = [i for i in steps_b if i not in steps_a]
    removed = [i for i in steps_a if i not in steps_b]
    changed = {}
    for step_id in steps_a.keys() & steps_b.keys():
        before, after = steps_a[step_id], steps_b[step_id]
        fields = {
            k: {"from": before.get(k), "to": after.get(k)}
            for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)
        }
        if fields:
            changed[step_id] = fields
    if added:
        steps["added"] = added
    if removed:
        steps["removed"] = removed
    if changed:
        steps["changed"] = dict(sorted(changed.items()))
    if steps:
        out["steps"] = steps
    return out
