"""Building the policy input document (DESIGN §5, version 1).

One builder for every action, so the shape a policy sees never depends on which
surface the request came through.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from gateway.types import ClientInfo, Principal, ToolDefinition, Transport

POLICY_INPUT_VERSION = 1

Action = Literal["tools/call", "tools/list", "plan/submit", "approval/decide"]


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC with millisecond precision, as every record of the gateway writes it."""
    moment = moment or datetime.now(UTC)
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def build_input(
    *,
    principal: Principal,
    action: Action,
    request_id: str,
    transport: Transport,
    tool: ToolDefinition | None = None,
    resource: dict[str, Any] | None = None,
    arguments: dict[str, Any] | None = None,
    client: ClientInfo | None = None,
    run_id: str | None = None,
    step_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    if tool is not None:
        resource = tool.to_policy_resource()
    return {
        "version": POLICY_INPUT_VERSION,
        "subject": principal.to_policy_subject(),
        "action": action,
        "resource": resource or {},
        "arguments": arguments or {},
        "context": {
            "time": utc_timestamp(now),
            "request_id": request_id,
            "transport": transport,
            "run_id": run_id,
            "step_id": step_id,
            "client": (client or ClientInfo()).to_dict(),
        },
    }
