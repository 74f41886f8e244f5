"""REST for pinned tool definitions: what is quarantined, and approving a new definition.

    GET  /v1/tools/definitions?status=quarantined|pinned   rows with diffs, and version
    GET  /v1/tools/{name}/definition                       one row
    POST /v1/tools/{name}/definition/approve               {"definition_hash": "…"}

Every route needs a token whose roles include one of ``pinning.approver_roles``:
definitions are not secret, but the review queue is for approvers. The console and
``gateway tools drift|approve`` are clients of these routes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest, GatewayError, NotAnApprover
from gateway.surfaces.auth import Authenticator
from gateway.surfaces.middleware import new_request_id
from gateway.types import Principal
from gateway.upstreams.pinning import PinGuard
from gateway.upstreams.pins import PinStatus


class ApproveDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition_hash: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="The pending hash the approver reviewed; refused (409) if the "
        "definition changed again since. Omit to approve whatever is pending.",
    )


class PinRoutes:
    def __init__(
        self, pins: PinGuard, authenticator: Authenticator, *, approver_roles: list[str]
    ) -> None:
        self._pins = pins
        self._auth = authenticator
        self._roles = frozenset(approver_roles)

    def routes(self) -> list[Route]:
        # Declared before /v1/tools/{name}/…; "definitions" is never a tool name
        # (those always contain "__").
        return [
            Route("/v1/tools/definitions", self.list_definitions, methods=["GET"]),
            Route("/v1/tools/{name}/definition", self.get_definition, methods=["GET"]),
            Route("/v1/tools/{name}/definition/approve", self.approve_definition, methods=["POST"]),
        ]

    async def _approver(self, request: Request) -> Principal:
        principal = await self._auth.authenticate(request.headers.get("authorization"))
        if not self._roles.intersection(principal.roles):
            raise NotAnApprover(
                f"approving tool definitions needs one of the roles {sorted(self._roles)}; "
                f"{principal.sub} has {sorted(principal.roles)}"
            )
        return principal

    async def list_definitions(self, request: Request) -> Response:
        request_id = _request_id(request)
        status_param = request.query_params.get("status", "all")
        try:
            await self._approver(request)
            status = None if status_param == "all" else _status(status_param)
            version, rows = await self._pins.describe(status)
        except GatewayError as error:
            return self._error(error, request_id)
        return JSONResponse({"version": version, "definitions": rows})

    async def get_definition(self, request: Request) -> Response:
        request_id = _request_id(request)
        try:
            await self._approver(request)
            row = await self._pins.describe_one(request.path_params["name"])
        except GatewayError as error:
            return self._error(error, request_id)
        return JSONResponse(row)

    async def approve_definition(self, request: Request) -> Response:
        request_id = _request_id(request)
        try:
            principal = await self._approver(request)
            body = await _parse(request)
            row = await self._pins.approve(
                request.path_params["name"], principal, body.definition_hash
            )
        except GatewayError as error:
            return self._error(error, request_id)
        return JSONResponse(row)

    def _error(self, error: GatewayError, request_id: str) -> Response:
        if error.http_status == 401:
            return self._auth.challenge(error, request_id=request_id)
        return JSONResponse(
            {"error": error.to_dict(), "request_id": request_id}, status_code=error.http_status
        )


def _status(value: str) -> PinStatus:
    try:
        return PinStatus(value)
    except ValueError:
        raise BadRequest(f"status must be one of all, pinned, quarantined; not {value!r}") from None


async def _parse(request: Request) -> ApproveDefinition:
    raw = await request.body()
    if not raw:
        return ApproveDefinition()
    try:
        data: Any = json.loads(raw)
        return ApproveDefinition.model_validate(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "body"
        raise BadRequest(f"request body is invalid: {where}: {problem['msg']}") from None


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or new_request_id()


def openapi_paths(error: dict[str, Any], auth_errors: dict[str, Any]) -> dict[str, Any]:
    """These routes in the OpenAPI document (gateway/surfaces/openapi.py)."""
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "Gateway tool name, <upstream>__<tool>",
    }
    row = {"description": "A pinned or quarantined definition", "content": _any_json()}
    forbidden = {**error, "description": "No role of pinning.approver_roles (not_an_approver)"}
    return {
        "/v1/tools/definitions": {
            "get": {
                "summary": "Pinned tool definitions, with diffs of quarantined ones",
                "operationId": "listToolDefinitions",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": ["all", "pinned", "quarantined"]},
                    }
                ],
                "responses": {
                    "200": {"description": "version and definitions", "content": _any_json()},
                    **auth_errors,
                    "403": forbidden,
                },
            }
        },
        "/v1/tools/{name}/definition": {
            "get": {
                "summary": "One tool's pinned definition",
                "operationId": "getToolDefinition",
                "parameters": [name],
                "responses": {"200": row, **auth_errors, "403": forbidden, "404": error},
            }
        },
        "/v1/tools/{name}/definition/approve": {
            "post": {
                "summary": "Approve the pending definition of a quarantined tool",
                "operationId": "approveToolDefinition",
                "parameters": [name],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": ApproveDefinition.model_json_schema()}
                    },
                },
                "responses": {
                    "200": row,
                    **auth_errors,
                    "403": forbidden,
                    "404": error,
                    "409": {
                        **error,
                        "description": "Not quarantined, changed again "
                        "(definition_not_pending), or pinned in config (pin_configured)",
                    },
                },
            }
        },
    }


def _any_json() -> dict[str, Any]:
    return {"application/json": {"schema": {"type": "object"}}}
