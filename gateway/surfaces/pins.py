"""REST for pinned definitions: what is quarantined, and approving new definitions.

    GET  /v1/definitions?status=&kind=&upstream=           rows of every kind, and version
    POST /v1/definitions/approve                           {"kind", "name", "definition_hash"}
    POST /v1/upstreams/{upstream}/definitions/approve      every pending one of an upstream
    GET  /v1/tools/definitions?status=quarantined|pinned   tools only (as before)
    GET  /v1/tools/{name}/definition                       one tool's row
    POST /v1/tools/{name}/definition/approve               {"definition_hash": "…"}

A resource's name is its gateway URI, which is why the general approval names it in
the body rather than the path. Every route needs a token whose roles include one of
``pinning.approver_roles``: definitions are not secret, but the review queue is for
approvers. The console and ``gateway tools drift|approve`` are clients of these routes.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest, NotAnApprover
from gateway.offerings import DefinitionKind
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


_HASH = r"^[0-9a-f]{64}$"


class ApproveOne(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DefinitionKind
    name: str = Field(
        min_length=1, description="The gateway name: <upstream>__<name>, or a gateway URI"
    )
    definition_hash: str | None = Field(
        None, pattern=_HASH, description="The pending hash reviewed (refused if it changed)"
    )


class Reviewed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DefinitionKind
    name: str = Field(min_length=1)
    definition_hash: str = Field(pattern=_HASH)


class ApproveUpstream(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definitions: list[Reviewed] | None = Field(
        None,
        description="Every pending definition reviewed, with its pending hash: refused "
        "(409) unless exactly what is pending. Omit to approve whatever is pending.",
    )


class PinRoutes:
    def __init__(self, pins: PinGuard, *, approver_roles: list[str]) -> None:
        self._pins = pins
        self._roles = frozenset(approver_roles)

    def routes(self) -> list[Route]:
        # Declared before /v1/tools/{name}/…; "definitions" is never a tool name
        # (those always contain "__").
        return [
            Route("/v1/definitions", self.list_all, methods=["GET"]),
            Route("/v1/definitions/approve", self.approve_one, methods=["POST"]),
            Route(
                "/v1/upstreams/{upstream}/definitions/approve",
                self.approve_upstream,
                methods=["POST"],
            ),
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

    async def list_all(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        kind = request.query_params.get("kind")
        if kind is not None and kind not in get_args(DefinitionKind):
            raise BadRequest(f"kind must be one of {', '.join(get_args(DefinitionKind))}")
        version, rows = await self._pins.describe(
            _status_of(request),
            kind=kind,  # type: ignore[arg-type]
            upstream=request.query_params.get("upstream"),
        )
        return JSONResponse({"version": version, "definitions": rows})

    async def approve_one(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        body = await json_body(request, ApproveOne)
        row = await self._pins.approve(body.kind, body.name, principal, body.definition_hash)
        return JSONResponse(row)

    async def approve_upstream(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        body = await json_body(request, ApproveUpstream)
        expected = (
            None
            if body.definitions is None
            else {(d.kind, d.name): d.definition_hash for d in body.definitions}
        )
        upstream = request.path_params["upstream"]
        rows = await self._pins.approve_upstream(upstream, principal, expected)  # type: ignore[arg-type]
        return JSONResponse({"upstream": upstream, "approved": rows})

    async def list_definitions(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        version, rows = await self._pins.describe(_status_of(request), kind="tool")
        return JSONResponse({"version": version, "definitions": rows})

    async def get_definition(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        return JSONResponse(await self._pins.describe_one("tool", request.path_params["name"]))

    async def approve_definition(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_approver(principal)
        body = await json_body(request, ApproveDefinition)
        name = request.path_params["name"]
        row = await self._pins.approve("tool", name, principal, body.definition_hash)
        return JSONResponse(row)


def _status_of(request: Request) -> PinStatus | None:
    value = request.query_params.get("status", "all")
    if value == "all":
        return None
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
    status = {"name": "status", "in": "query", "schema": {"enum": ["all", "pinned", "quarantined"]}}
    conflict = {
        **error,
        "description": "Not quarantined, changed again (definition_not_pending), or pinned "
        "in config (pin_configured)",
    }
    return {
        "/v1/definitions": {
            "get": {
                "summary": "Pinned definitions of every kind, with diffs of quarantined ones",
                "operationId": "listDefinitions",
                "parameters": [
                    status,
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"enum": list(get_args(DefinitionKind))},
                    },
                    {"name": "upstream", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "version and definitions", "content": _any_json()},
                    **auth_errors,
                    "400": error,
                    "403": forbidden,
                },
            }
        },
        "/v1/definitions/approve": {
            "post": {
                "summary": "Approve the pending definition of a quarantined tool, prompt, "
                "resource or resource template",
                "operationId": "approveDefinition",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ApproveOne.model_json_schema()}},
                },
                "responses": {
                    "200": row,
                    **auth_errors,
                    "400": error,
                    "403": forbidden,
                    "404": error,
                    "409": conflict,
                },
            }
        },
        "/v1/upstreams/{upstream}/definitions/approve": {
            "post": {
                "summary": "Approve every pending definition of one upstream at once",
                "operationId": "approveUpstreamDefinitions",
                "parameters": [
                    {
                        "name": "upstream",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _approve_upstream_schema()}},
                },
                "responses": {
                    "200": {
                        "description": "The upstream and the released definitions",
                        "content": _any_json(),
                    },
                    **auth_errors,
                    "400": error,
                    "403": forbidden,
                    "409": conflict,
                },
            }
        },
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


def _approve_upstream_schema() -> dict[str, Any]:
    """`ApproveUpstream`'s schema with its item inlined: a ``$defs`` reference would
    point at the root of the OpenAPI document, not of this schema."""
    schema = ApproveUpstream.model_json_schema()
    item = schema.pop("$defs")["Reviewed"]
    schema["properties"]["definitions"]["anyOf"][0]["items"] = item
    return schema


def _any_json() -> dict[str, Any]:
    return {"application/json": {"schema": {"type": "object"}}}
