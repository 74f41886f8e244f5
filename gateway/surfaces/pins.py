"""REST for pinned tool definitions: what is quarantined, and approving a new definition.

    GET  /v1/tools/definitions?status=quarantined|pinned   rows with diffs, and version
    GET  /v1/tools/{name}/definition                       one row
    POST /v1/tools/{name}/definition/approve               {"definition_hash": "…"}

Every route needs a token whose roles include one of ``pinning.approver_roles``:
definitions are not secret, but the review queue is for approvers. The console and
``gateway tools drift|approve`` are clients of these routes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest, NotAnApprover
from gateway.surfaces.auth import principal_of
from gateway.surfaces.rest_io import json_body
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
    def __init__(self, pins: PinGuard, *, approver_roles: list[str]) -> None:
        self._pins = pins
        self._roles = frozenset(approver_roles)

    def routes(self) -> list[Route]:
        # Declared before /v1/tools/{name}/…; "definitions" is never a tool name
        # (those always contain "__").
        return [
            Route("/v1/tools/definitions", self.list_definitions, methods=["GET"]),
            Route("/v1/tools/{name}/definition", self.get_definition, methods=["GET"]),
            Route("/v1/tools/{name}/definition/approve", self.approve_definition, methods=["POST"]),
        ]

    def _check_approver(self, principal: Principal) -> None:
        if not self._roles.intersection(principal.roles):
            raise NotAnApprover(
                f"approving tool definitions needs one of the roles {sorted(self._roles)}; "
                f"{principal.sub} has {sorted(principal.roles)}"
            )

    async def list_definitions(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        status_param = request.query_params.get("status", "all")
        status = None if status_param == "all" else _status(status_param)
        version, rows = await self._pins.describe(status)
        return JSONResponse({"version": version, "definitions": rows})

    async def get_definition(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        return JSONResponse(await self._pins.describe_one(request.path_params["name"]))

    async def approve_definition(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        body = await json_body(request, ApproveDefinition)
        row = await self._pins.approve(request.path_params["name"], principal, body.definition_hash)
        return JSONResponse(row)


def _status(value: str) -> PinStatus:
    try:
        return PinStatus(value)
    except ValueError:
        raise BadRequest(f"status must be one of all, pinned, quarantined; not {value!r}") from None


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
