"""The runs REST API: submit a plan, read runs, cancel one; and schedules.

    POST /v1/runs                 {"plan": {…} | "<yaml or json>" | "workflow": "NAME@VERSION"
                                   | "NAME@CHANNEL", "inputs": {…}, "idempotency_key": "…"}
                                   (or an Idempotency-Key header)
    GET  /v1/runs                 ?status=…&limit=…   the runs the caller may read
    GET  /v1/runs/{id}            status, steps with attempts, outputs, timing, provenance
    POST /v1/runs/{id}/cancel
    GET  /v1/schedules  POST /v1/schedules  DELETE /v1/schedules/{id}

Every route authenticates like the tool routes; a caller sees only runs and schedules
it submitted, except that holders of ``executor.viewer_roles`` read every run (never
cancel it). Errors are the executor's `GatewayError`s with their stable codes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest
from gateway.executor.plan import Plan, load_plan_text, parse_plan
from gateway.executor.service import Executor
from gateway.surfaces.auth import client_info, principal_of
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import json_body
from gateway.workflows.service import Workflows


class SubmitRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: dict[str, Any] | str | None = Field(
        None, description="The plan: an object, or JSON/YAML text (or name a workflow)"
    )
    workflow: str | None = Field(
        None,
        min_length=3,
        max_length=200,
        description="A published workflow instead of a plan: NAME@VERSION or NAME@CHANNEL",
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="The run's inputs")
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200, description="Same key, same run (per submitter)"
    )

    @model_validator(mode="after")
    def _plan_or_workflow(self) -> SubmitRunRequest:
        if (self.plan is None) == (self.workflow is None):
            raise ValueError("give exactly one of plan and workflow")
        return self


class RunSubmitted(BaseModel):
    run_id: str
    status: str
    created: bool = Field(description="False when the idempotency key named an existing run")
    url: str


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    cron: str = Field(description="Five-field cron expression, UTC")
    plan: dict[str, Any] | str
    inputs: dict[str, Any] = Field(default_factory=dict)


def parse_plan_field(plan: dict[str, Any] | str) -> Plan:
    return load_plan_text(plan) if isinstance(plan, str) else parse_plan(plan)


class RunsApi:
    def __init__(self, executor: Executor, workflows: Workflows) -> None:
        self._executor = executor
        self._workflows = workflows

    def routes(self) -> list[Route]:
        return [
            Route("/v1/runs", self.submit, methods=["POST"]),
            Route("/v1/runs", self.list_runs, methods=["GET"]),
            Route("/v1/runs/{run_id}", self.get_run, methods=["GET"]),
            Route("/v1/runs/{run_id}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/schedules", self.list_schedules, methods=["GET"]),
            Route("/v1/schedules", self.add_schedule, methods=["POST"]),
            Route("/v1/schedules/{schedule_id}", self.remove_schedule, methods=["DELETE"]),
        ]

    async def submit(self, request: Request) -> Response:
        principal = principal_of(request)
        body = await json_body(request, SubmitRunRequest)
        key = body.idempotency_key or request.headers.get("idempotency-key")
        if body.workflow is not None:
            run_id, created = await self._workflows.submit_run(
                principal,
                body.workflow,
                body.inputs,
                idempotency_key=key,
                request_id=request_id_of(request),
                transport="rest",
                client=client_info(request),
            )
        else:
            assert body.plan is not None
            run_id, created = await self._executor.submit(
                principal,
                body.plan,
                body.inputs,
                idempotency_key=key,
                request_id=request_id_of(request),
                transport="rest",
                client=client_info(request),
            )
        view = await self._executor.get(run_id, principal)
        answer = RunSubmitted(
            run_id=run_id, status=view["status"], created=created, url=f"/v1/runs/{run_id}"
        )
        return JSONResponse(answer.model_dump(), status_code=201 if created else 200)

    async def list_runs(self, request: Request) -> Response:
        principal = principal_of(request)
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        runs = await self._executor.list(
            principal, status=request.query_params.get("status"), limit=limit
        )
        return JSONResponse({"runs": runs})

    async def get_run(self, request: Request) -> Response:
        principal = principal_of(request)
        return JSONResponse(await self._executor.get(request.path_params["run_id"], principal))

    async def cancel(self, request: Request) -> Response:
        principal = principal_of(request)
        run_id = request.path_params["run_id"]
        status = await self._executor.cancel(run_id, principal)
        return JSONResponse({"run_id": run_id, "status": status}, status_code=202)

    async def list_schedules(self, request: Request) -> Response:
        principal = principal_of(request)
        schedules = await self._executor.schedules.list(principal)
        return JSONResponse({"schedules": schedules})

    async def add_schedule(self, request: Request) -> Response:
        principal = principal_of(request)
        body = await json_body(request, ScheduleRequest)
        schedule = await self._executor.schedules.add(
            principal,
            name=body.name,
            cron=body.cron,
            plan=parse_plan_field(body.plan),
            inputs=body.inputs,
            request_id=request_id_of(request),
            transport="rest",
        )
        return JSONResponse(schedule, status_code=201)

    async def remove_schedule(self, request: Request) -> Response:
        principal = principal_of(request)
        await self._executor.schedules.remove(request.path_params["schedule_id"], principal)
        return Response(status_code=204)


# --- OpenAPI ---------------------------------------------------------------------------

OPENAPI_MODELS = (SubmitRunRequest, RunSubmitted, ScheduleRequest)


def openapi_paths(error: dict[str, Any], auth_errors: dict[str, Any]) -> dict[str, Any]:
    """The runs and schedules API for /openapi.json (docs/workflows.md)."""

    def ref(name: str, description: str) -> dict[str, Any]:
        schema = {"$ref": f"#/components/schemas/{name}"}
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    run_object = {
        "description": "The run: status, steps with attempts, redacted outputs, timing, provenance",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    return {
        "/v1/runs": {
            "post": {
                "summary": "Submit a plan (a plan/submit policy decision) and create a run",
                "operationId": "submitRun",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/SubmitRunRequest"}
                        }
                    },
                },
                "responses": {
                    "201": ref("RunSubmitted", "Run created"),
                    "200": ref("RunSubmitted", "The run this idempotency key created before"),
                    "400": {
                        **error,
                        "description": "Invalid plan (every problem listed) or inputs",
                    },
                    **auth_errors,
                    "403": {**error, "description": "Plan refused by policy (plan_refused)"},
                    "404": {**error, "description": "No such workflow, version or channel"},
                    "409": {
                        **error,
                        "description": "Idempotency key used for another plan, or the "
                        "workflow's pinned tools drifted (workflow_drifted)",
                    },
                    "503": {**error, "description": "Audit log unavailable: no run created"},
                },
            },
            "get": {
                "summary": "Your runs (every run for executor.viewer_roles), newest first",
                "operationId": "listRuns",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": {"description": '{"runs": [...]}'}, **auth_errors},
            },
        },
        "/v1/runs/{run_id}": {
            "get": {
                "summary": "One run",
                "operationId": "getRun",
                "parameters": [path_param("run_id")],
                "responses": {
                    "200": run_object,
                    **auth_errors,
                    "404": {**error, "description": "No such run of yours"},
                },
            }
        },
        "/v1/runs/{run_id}/cancel": {
            "post": {
                "summary": "Cancel a run",
                "operationId": "cancelRun",
                "parameters": [path_param("run_id")],
                "responses": {
                    "202": {
                        "description": '{"run_id", "status"}: cancelled, or '
                        "cancelling at its worker's next heartbeat"
                    },
                    **auth_errors,
                    "404": {**error, "description": "No such run of yours"},
                    "409": {**error, "description": "The run already finished"},
                },
            }
        },
        "/v1/schedules": {
            "get": {
                "summary": "Your schedules",
                "operationId": "listSchedules",
                "responses": {"200": {"description": '{"schedules": [...]}'}, **auth_errors},
            },
            "post": {
                "summary": "Register a plan on a cron schedule (a plan/submit decision)",
                "operationId": "addSchedule",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ScheduleRequest"}
                        }
                    },
                },
                "responses": {
                    "201": {"description": "The schedule"},
                    "400": {**error, "description": "Invalid cron, plan or inputs"},
                    **auth_errors,
                    "403": {**error, "description": "Plan refused by policy"},
                },
            },
        },
        "/v1/schedules/{schedule_id}": {
            "delete": {
                "summary": "Remove a schedule",
                "operationId": "removeSchedule",
                "parameters": [path_param("schedule_id")],
                "responses": {
                    "204": {"description": "Removed"},
                    **auth_errors,
                    "404": {**error, "description": "No such schedule of yours"},
                },
            }
        },
    }
