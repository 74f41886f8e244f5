"""Building the policy input document (architecture.md §5, version 1).

One builder for every action, so the shape a policy sees never depends on which
surface the request came through. ``resource`` is what the action is about: a tool
(`ToolDefinition.to_policy_resource`), a prompt, a resource or resource template
(`gateway.offerings`), a resource URI being read, or what a completion completes
(docs/policies.md, "Input by action").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from gateway.timestamps import format_utc
from gateway.types import ClientInfo, Principal, ToolDefinition, Transport

POLICY_INPUT_VERSION = 1

Action = Literal[
    "tools/call",
    "tools/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "plan/submit",
    "approval/decide",
    "elicitation/create",
    "sampling/createMessage",
    "roots/list",
    "workflow/publish",
    "workflow/promote",
]


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
            "time": format_utc(now or datetime.now(UTC)),
            "request_id": request_id,
            "transport": transport,
            "run_id": run_id,
            "step_id": step_id,
            "client": (client or ClientInfo()).to_dict(),
        },
    }
