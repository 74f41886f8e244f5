"""The workflows REST API: publish, list, show, diff, promote (docs/workflows.md).

    POST /v1/workflows                          {"manifest": {…}, "force"}  publish a version
    POST /v1/workflows/test                     {"manifest": {…}}  run its scenarios, offline
    GET  /v1/workflows                          every workflow: versions, channels
    GET  /v1/workflows/{name}                   versions, channels, promotion history
    GET  /v1/workflows/{name}/{version}         one version with its whole manifest
    GET  /v1/workflows/{name}/diff?a=V&b=V      what differs between two versions (or channels)
    POST /v1/workflows/{name}/{version}/promote {"channel": "prod"}

Every route authenticates like the others. Reading is for any authenticated caller
(a workflow is a plan, not a secret: what it may do is what policy lets its runner
do); publishing and promoting are policy decisions (``workflow/publish``,
``workflow/promote``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest
from gateway.surfaces.auth import client_info, principal_of
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import json_body
from gateway.workflows.manifest import CHANNEL_PATTERN
from gateway.workflows.service import Workflows


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: dict[str, Any] = Field(description="workflow.yaml as JSON, with its scenarios inline")
    force: bool = Field(
        False, description="Publish even if scenarios fail (the audit entry says so)"
    )


class ScenarioTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: dict[str, Any] = Field(description="workflow.yaml as JSON, with its scenarios inline")


class WorkflowPublished(BaseModel):
    id: str
    name: str
    version: str
    hash: str
    created: bool = Field(description="False when this content was already published")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(pattern=CHANNEL_PATTERN, description="e.g. dev, staging, prod")


class PromotionAnswer(BaseModel):
    status: str = Field(description="promoted, unchanged or pending_approval")
    channel: str
    workflow: dict[str, Any]
    previous: str | None = None
    approval_id: str | None = None


class WorkflowsApi:
    def __init__(self, workflows: Workflows) -> None:
        self._workflows = workflows

    def routes(self) -> list[Route]:
        return [
            Route("/v1/workflows", self.publish, methods=["POST"]),
            Route("/v1/workflows", self.list_workflows, methods=["GET"]),
            Route("/v1/workflows/test", self.test, methods=["POST"]),
            Route("/v1/workflows/{name}", self.show, methods=["GET"]),
            Route("/v1/workflows/{name}/diff", self.diff, methods=["GET"]),
            Route("/v1/workflows/{name}/{version}", self.show_version, methods=["GET"]),
            Route("/v1/workflows/{name}/{version}/promote", self.promote, methods=["POST"]),
        ]

    async def publish(self, request: Request) -> Response:
        body = await json_body(request, PublishRequest)
        published, created = await self._workflows.publish(
            principal_of(request),
            body.manifest,
            request_id=request_id_of(request),
            transport="rest",
            client=client_info(request),
            force=body.force,
        )
        answer = WorkflowPublished(
            id=published.id,
            name=published.name,
            version=published.version,
            hash=published.content_hash,
            created=created,
        )
        return JSONResponse(answer.model_dump(), status_code=201 if created else 200)

    async def test(self, request: Request) -> Response:
        body = await json_body(request, ScenarioTestRequest)
        results = await self._workflows.test(
            principal_of(request), body.manifest, request_id=request_id_of(request)
        )
        return JSONResponse({"passed": all(r["passed"] for r in results), "scenarios": results})

    async def list_workflows(self, request: Request) -> Response:
        principal_of(request)
        return JSONResponse({"workflows": await self._workflows.list()})

    async def show(self, request: Request) -> Response:
        principal_of(request)
        return JSONResponse(await self._workflows.show(request.path_params["name"]))

    async def show_version(self, request: Request) -> Response:
        principal_of(request)
        name, version = request.path_params["name"], request.path_params["version"]
        return JSONResponse(await self._workflows.show(name, version))

    async def diff(self, request: Request) -> Response:
        principal_of(request)
        name = request.path_params["name"]
        a, b = request.query_params.get("a"), request.query_params.get("b")
        if not a or not b:
            raise BadRequest("name the two versions (or channels) as ?a=…&b=…")
        return JSONResponse(await self._workflows.diff(f"{name}@{a}", f"{name}@{b}"))

    async def promote(self, request: Request) -> Response:
        body = await json_body(request, PromoteRequest)
        name, version = request.path_params["name"], request.path_params["version"]
        answer = await self._workflows.promotions.promote(
            principal_of(request),
            f"{name}@{version}",
            body.channel,
            request_id=request_id_of(request),
            transport="rest",
            client=client_info(request),
        )
        status = 202 if answer["status"] == "pending_approval" else 200
        return JSONResponse(PromotionAnswer(**answer).model_dump(), status_code=status)


# --- OpenAPI ---------------------------------------------------------------------------

OPENAPI_MODELS = (
    PublishRequest,
    ScenarioTestRequest,
    WorkflowPublished,
    PromoteRequest,
    PromotionAnswer,
)


def openapi_paths(error: dict[str, Any], auth_errors: dict[str, Any]) -> dict[str, Any]:
    """The workflows API for /openapi.json (docs/workflows.md)."""

    def ref(name: str, description: str) -> dict[str, Any]:
        schema = {"$ref": f"#/components/schemas/{name}"}
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def body(name: str) -> dict[str, Any]:
        schema = {"$ref": f"#/components/schemas/{name}"}
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    obj = {"content": {"application/json": {"schema": {"type": "object"}}}}
    not_found = {**error, "description": "No such workflow, version or channel"}
    return {
        "/v1/workflows": {
            "post": {
                "summary": "Publish a workflow version (a workflow/publish policy decision)",
                "operationId": "publishWorkflow",
                "requestBody": body("PublishRequest"),
                "responses": {
                    "201": ref("WorkflowPublished", "Published"),
                    "200": ref("WorkflowPublished", "This content was already published"),
                    "400": {**error, "description": "Invalid manifest or plan (every problem)"},
                    **auth_errors,
                    "403": {**error, "description": "Refused by policy (workflow_refused)"},
                    "409": {
                        **error,
                        "description": "NAME@VERSION holds other content, or a pinned "
                        "tool definition is not the catalog's (workflow_drifted)",
                    },
                    "422": {**error, "description": "A scenario fails (not forced)"},
                },
            },
            "get": {
                "summary": "Every workflow: its versions and channels",
                "operationId": "listWorkflows",
                "responses": {"200": {**obj, "description": '{"workflows": [...]}'}, **auth_errors},
            },
        },
        "/v1/workflows/test": {
            "post": {
                "summary": "Run a workflow's scenarios against it, offline (changes nothing)",
                "operationId": "testWorkflow",
                "requestBody": body("ScenarioTestRequest"),
                "responses": {
                    "200": {**obj, "description": '{"passed", "scenarios": [...]}'},
                    "400": {**error, "description": "Invalid manifest, plan or scenario"},
                    **auth_errors,
                    "409": {**error, "description": "A pinned tool drifted"},
                },
            }
        },
        "/v1/workflows/{name}": {
            "get": {
                "summary": "A workflow: versions, channels, promotion history",
                "operationId": "getWorkflow",
                "parameters": [path_param("name")],
                "responses": {
                    "200": {**obj, "description": "The workflow"},
                    **auth_errors,
                    "404": not_found,
                },
            }
        },
        "/v1/workflows/{name}/diff": {
            "get": {
                "summary": "What differs between two versions (or channels) of a workflow",
                "operationId": "diffWorkflow",
                "parameters": [
                    path_param("name"),
                    {"name": "a", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "b", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {**obj, "description": '{"a", "b", "differences"}'},
                    **auth_errors,
                    "404": not_found,
                },
            }
        },
        "/v1/workflows/{name}/{version}": {
            "get": {
                "summary": "One published version with its whole manifest",
                "operationId": "getWorkflowVersion",
                "parameters": [path_param("name"), path_param("version")],
                "responses": {
                    "200": {**obj, "description": "The version"},
                    **auth_errors,
                    "404": not_found,
                },
            }
        },
        "/v1/workflows/{name}/{version}/promote": {
            "post": {
                "summary": "Point a channel at this version (a workflow/promote decision)",
                "operationId": "promoteWorkflow",
                "parameters": [path_param("name"), path_param("version")],
                "requestBody": body("PromoteRequest"),
                "responses": {
                    "200": ref("PromotionAnswer", "Promoted, or already there"),
                    "202": ref(
                        "PromotionAnswer", "Waits for an approval: promote again once approved"
                    ),
                    **auth_errors,
                    "403": {**error, "description": "Refused by policy or denied by an approver"},
                    "404": not_found,
                },
            }
        },
    }
