"""The executor as MCP tools the gateway offers itself: ``workflow__submit_plan`` and
``workflow__get_run``, so a planning agent hands its plan over on the connection it
already has.

They are listed next to the upstream tools and reached through the same
authenticated endpoint; submitting is the same ``plan/submit`` policy decision as
``POST /v1/runs``, and a caller reads only its own runs. Failures are tool results
with ``isError`` and the error's stable code, like a denied call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gateway.canonical import sha256_hex
from gateway.errors import GatewayError
from gateway.executor.service import Executor
from gateway.types import ClientInfo, Principal, ToolDefinition, ToolResult

SERVER = "workflow"

_SUBMIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "plan": {
            "description": "The plan (see docs/workflows.md): an object with steps, or "
            "its JSON/YAML text (or name a published workflow instead)",
            "type": ["object", "string"],
        },
        "workflow": {
            "description": "A published workflow to run instead of a plan: "
            "NAME@VERSION or NAME@CHANNEL",
            "type": "string",
        },
        "inputs": {"type": "object", "description": "The run's inputs"},
        "idempotency_key": {
            "type": "string",
            "description": "Submitting again with the same key returns the same run",
        },
    },
    "additionalProperties": False,
}

_GET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"run_id": {"type": "string"}},
    "required": ["run_id"],
    "additionalProperties": False,
}


def _definition(name: str, description: str, schema: dict[str, Any]) -> ToolDefinition:
    document = {"name": name, "description": description, "inputSchema": schema}
    return ToolDefinition(
        name=f"{SERVER}__{name}",
        server=SERVER,
        upstream_tool=name,
        description=description,
        input_schema=schema,
        output_schema=None,
        annotations={"readOnlyHint": name == "get_run"},
        risk="low",
        definition_hash=sha256_hex(document),
    )


DEFINITIONS = [
    _definition(
        "submit_plan",
        "Submit a plan (a DAG of tool calls, approval gates and timers) for durable "
        "execution by the gateway. Returns the run id; every step is checked by policy "
        "and audited like a direct call.",
        _SUBMIT_SCHEMA,
    ),
    _definition(
        "get_run",
        "The status of a run you submitted: each step with its attempts, outputs and timing.",
        _GET_SCHEMA,
    ),
]


class WorkflowRuns(Protocol):
    """Submits a run of a published workflow (`gateway.workflows.service.Workflows`,
    a layer above this one)."""

    async def submit_run(
        self,
        principal: Principal,
        ref: str,
        inputs: Any,
        *,
        idempotency_key: str | None,
        request_id: str,
        transport: Any,
        client: ClientInfo | None = None,
    ) -> tuple[str, bool]: ...


class WorkflowTools:
    def __init__(self, executor: Executor, workflows: WorkflowRuns) -> None:
        self._executor = executor
        self._workflows = workflows

    @property
    def definitions(self) -> Sequence[ToolDefinition]:
        """Listed like any tool, in the same one list decision as the catalog's (a grant
        for ``workflow__submit_plan`` or ``workflow__*`` under ``tools/list``)."""
        return DEFINITIONS

    def handles(self, name: str) -> bool:
        return any(d.name == name for d in DEFINITIONS)

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        principal: Principal,
        request_id: str,
        client: ClientInfo | None = None,
    ) -> ToolResult:
        try:
            if name == f"{SERVER}__submit_plan":
                data = await self._submit(arguments, principal, request_id, client)
            else:
                run_id = arguments.get("run_id")
                if not isinstance(run_id, str):
                    return _error({"code": "invalid_arguments", "message": "run_id is required"})
                data = await self._executor.get(run_id, principal)
        except GatewayError as error:
            return _error(error.to_dict())
        return ToolResult(
            content=[{"type": "text", "text": _summary(data)}], structured_content=data
        )

    async def _submit(
        self,
        arguments: dict[str, Any],
        principal: Principal,
        request_id: str,
        client: ClientInfo | None,
    ) -> dict[str, Any]:
        key = arguments.get("idempotency_key")
        key = key if isinstance(key, str) else None
        workflow = arguments.get("workflow")
        if ("plan" in arguments) == (workflow is not None):
            raise InvalidArguments("give exactly one of plan and workflow")
        if workflow is not None:
            if not isinstance(workflow, str):
                raise InvalidArguments("workflow is NAME@VERSION or NAME@CHANNEL")
            run_id, created = await self._workflows.submit_run(
                principal,
                workflow,
                arguments.get("inputs"),
                idempotency_key=key,
                request_id=request_id,
                transport="mcp",
                client=client,
            )
        else:
            run_id, created = await self._executor.submit(
                principal,
                arguments.get("plan"),
                arguments.get("inputs"),
                idempotency_key=key,
                request_id=request_id,
                transport="mcp",
                client=client,
            )
        view = await self._executor.get(run_id, principal)
        return {"run_id": run_id, "status": view["status"], "created": created}


class InvalidArguments(GatewayError):
    code = "invalid_arguments"
    http_status = 400


def _summary(data: dict[str, Any]) -> str:
    if "steps" in data:
        steps = ", ".join(f"{s['id']}: {s['status']}" for s in data["steps"])
        return f"run {data['id']} is {data['status']} ({steps})"
    verb = "created" if data.get("created") else "already exists"
    return f"run {data['run_id']} {verb}, status {data['status']}"


def _error(error: dict[str, Any]) -> ToolResult:
    return ToolResult(
        content=[{"type": "text", "text": f"{error['code']}: {error['message']}"}],
        structured_content={"error": error},
        is_error=True,
    )
