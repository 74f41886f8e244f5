"""The REST surface: ``GET /v1/tools`` and ``POST /v1/tools/{name}/call``.

Bodies are pydantic models, so a malformed request is a 400 that names the field, and
the same models generate the OpenAPI document at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import telemetry
from gateway.errors import BadRequest, GatewayError
from gateway.operations import Operation
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import client_info, principal_of
from gateway.surfaces.mcp import outcome_meta
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import json_body, retry_headers
from gateway.surfaces.tracing import trace_of
from gateway.surfaces.wire_forms import WireForms
from gateway.types import OutcomeStatus, ToolDefinition


class CallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code")
    message: str
    details: dict[str, Any] | None = None


class ToolInfo(BaseModel):
    name: str
    title: str | None = None
    description: str | None = None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = {}
    risk: str
    definition_hash: str


class ToolList(BaseModel):
    tools: list[ToolInfo]


class ToolResultBody(BaseModel):
    content: list[dict[str, Any]]
    structured_content: dict[str, Any] | None = None
    is_error: bool


class CallResponse(BaseModel):
    request_id: str
    status: str = Field(description="ok, denied, pending_approval or error")
    result: ToolResultBody | None = None
    error: ErrorBody | None = None
    decision: dict[str, Any] | None = None
    approval_id: str | None = None
    replay_of: str | None = Field(
        None,
        description="Set when this is the recorded outcome of an approved call that already "
        "ran for that request id; this request did not run it again",
    )


class RestSurface:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        # Each tool's JSON, serialized once per definition (`wire_forms`).
        self._tool_json: WireForms[ToolDefinition, bytes] = WireForms(
            _tool_json, pipeline.catalog.tools
        )

    def routes(self) -> list[Route]:
        return [
            Route("/v1/tools", self.list_tools, methods=["GET"]),
            Route("/v1/tools/{name}/call", self.call_tool, methods=["POST"]),
        ]

    async def list_tools(self, request: Request) -> Response:
        principal = principal_of(request)
        tools = await self._pipeline.lists.tools(
            principal,
            transport="rest",
            request_id=request_id_of(request),
            client=client_info(request),
        )
        # `ToolList`, joined from each tool's JSON, serialized once per definition:
        # building and dumping 1,000 models on every list cost ≈ 20 ms (the models are
        # still what /openapi.json describes; tests/unit/surfaces/test_rest_lists.py).
        body = b'{"tools":[' + b",".join(self._tool_json.of(tools)) + b"]}"
        return Response(body, media_type="application/json")

    async def call_tool(self, request: Request) -> Response:
        principal = principal_of(request)
        try:
            body = await json_body(request, CallRequest)
        except BadRequest as malformed:
            # Every answer of this route is a CallResponse (openapi.py): no call was made.
            refused = CallResponse(
                request_id=request_id_of(request),
                status=OutcomeStatus.ERROR.value,
                error=ErrorBody(**malformed.to_dict()),
            )
            return JSONResponse(
                refused.model_dump(exclude_none=True), status_code=malformed.http_status
            )
        outcome = await self._pipeline.call(
            Operation(
                principal=principal,
                method="tools/call",
                target=request.path_params["name"],
                arguments=body.arguments,
                transport="rest",
                request_id=request_id_of(request),
                client=client_info(request),
                hold_s=prefer_wait(request.headers.get("prefer")),
                trace=trace_of(request) if telemetry.ON else None,
            )
        )
        meta = outcome_meta(outcome)
        response = CallResponse(
            request_id=outcome.request_id,
            status=outcome.status.value,
            result=ToolResultBody(**outcome.result.to_dict()) if outcome.result else None,
            error=meta.get("error"),
            decision=meta.get("decision"),
            approval_id=outcome.approval_id,
            replay_of=outcome.replay_of,
        )
        status = 200
        if outcome.status is OutcomeStatus.PENDING_APPROVAL:
            status = 202
        elif isinstance(outcome.error, GatewayError):
            status = outcome.error.http_status
        return JSONResponse(
            response.model_dump(exclude_none=True),
            status_code=status,
            headers=retry_headers(outcome.error),
        )


def prefer_wait(header: str | None) -> float | None:
    """The ``wait`` preference of an RFC 7240 ``Prefer`` header, in seconds: how long
    the client will wait for a call held for approval (``Prefer: wait=0`` answers 202
    at once). None when absent or malformed."""
    for preference in (header or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, float(value.strip().strip('"')))
            except ValueError:
                return None
    return None


def _tool_json(tool: ToolDefinition) -> bytes:
    """A tool's entry in the body of ``GET /v1/tools`` (`ToolList`), as JSON."""
    return _tool_info(tool).model_dump_json().encode()


def _tool_info(tool: ToolDefinition) -> ToolInfo:
    return ToolInfo(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=tool.annotations,
        risk=tool.risk,
        definition_hash=tool.definition_hash,
    )
