"""Errors of workflows, each with a stable ``code`` (documented in docs/workflows.md)."""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError


class WorkflowError(GatewayError):
    code = "workflow_error"


class WorkflowInvalid(WorkflowError):
    """The manifest is malformed or inconsistent; ``details.problems`` lists each."""

    code = "workflow_invalid"
    http_status = 400

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0] if problems else {"field": "", "message": "invalid"}
        where = f"{first['field']}: " if first.get("field") else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"invalid workflow: {where}{first['message']}{more}", details={"problems": problems}
        )


class WorkflowNotFound(WorkflowError):
    code = "workflow_not_found"
    http_status = 404


class WorkflowVersionConflict(WorkflowError):
    """Other content was already published under this NAME@VERSION."""

    code = "workflow_version_conflict"
    http_status = 409


class WorkflowRefused(WorkflowError):
    """Policy refused publishing or promoting (``details.decision``)."""

    code = "workflow_refused"
    http_status = 403


class ScenariosFailed(WorkflowError):
    """A scenario of the workflow does not meet its expectations
    (``details.scenarios``: each failing one with its mismatches)."""

    code = "workflow_scenarios_failed"
    http_status = 422
