"""What a run knows of the published workflow it runs (`WorkflowRef`), and the drift check.

The executor does not read workflows (`gateway.workflows` sits above it): whoever
resolves ``NAME@VERSION`` or ``NAME@CHANNEL`` hands it this reference with the plan.
It goes into the ``plan/submit`` policy input (``resource.workflow``; ``null`` for an
ad hoc plan), into the run's provenance, and decides whether the plan needs a review
the workflow itself asks for (its ``approvals.plan``; policy still decides, and the
stricter of the two wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.executor.errors import WorkflowDrifted
from gateway.executor.validation import ToolLookup


@dataclass(frozen=True)
class WorkflowRef:
    name: str
    version: str
    id: str
    content_hash: str
    # The channel it was named by (``prod``), or None when named by version.
    channel: str | None = None
    # Tool name -> the definition hash the workflow was published against.
    tools: Mapping[str, str] = field(default_factory=dict)
    # Approvers of a review of the whole plan that the workflow asks for (empty: none).
    plan_approvers: tuple[str, ...] = ()

    def to_policy(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "id": self.id,
            "hash": self.content_hash,
            "channel": self.channel,
        }


def current_hash(catalog: ToolLookup, name: str) -> str | None:
    """The definition hash the catalog offers for ``name``; None when it offers none
    (unknown, or quarantined until its new definition is approved)."""
    try:
        return str(catalog.resolve(name).definition_hash)
    except GatewayError:
        return None


def check_drift(workflow: WorkflowRef, catalog: ToolLookup) -> None:
    """Raises `WorkflowDrifted` naming every pinned tool whose definition in the
    catalog is not the one pinned (or that is gone, or quarantined)."""
    drifted = []
    for name, pinned in sorted(workflow.tools.items()):
        current = current_hash(catalog, name)
        if current != pinned:
            drifted.append({"tool": name, "pinned": pinned, "current": current})
    if drifted:
        names = ", ".join(d["tool"] for d in drifted)
        raise WorkflowDrifted(
            f"workflow {workflow.name}@{workflow.version} pins tool definitions that "
            f"changed: {names}; publish a version tested against the current ones",
            details={"drifted": drifted},
        )
