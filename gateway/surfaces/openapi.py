"""The OpenAPI 3.1 document of the REST surface, generated from its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from gateway.surfaces.rest import CallRequest, CallResponse, ErrorBody, ToolList
from gateway.version import __version__

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def build_openapi(public_url: str) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "validation") for m in (CallRequest, CallResponse, ErrorBody, ToolList)],
        ref_template=_REF,
    )
    error = {
        "description": "Error",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": _ref("ErrorBody"), "request_id": {"type": "string"}},
                }
            }
        },
    }
    auth_errors = {
        "401": {**error, "description": "Missing or invalid bearer token"},
        "403": {**error, "description": "Token lacks a required scope"},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent tool gateway",
            "version": __version__,
            "description": "Every tool call is authenticated, decided by policy, audited and "
            "forwarded under the gateway's own credentials.",
        },
        "servers": [{"url": public_url}],
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/tools": {
                "get": {
                    "summary": "Tools the caller may see",
                    "operationId": "listTools",
                    "responses": {"200": _json("ToolList", "The visible tools"), **auth_errors},
                }
            },
            "/v1/tools/{name}/call": {
                "post": {
                    "summary": "Call a tool through policy and audit",
                    "operationId": "callTool",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "Gateway tool name, <upstream>__<tool>",
                        }
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("CallRequest")}},
                    },
                    "responses": {
                        "200": _json("CallResponse", "Forwarded; `result` is the tool's answer"),
                        "202": _json("CallResponse", "Held for approval"),
                        "400": _json(
                            "CallResponse", "Malformed body or arguments not matching the schema"
                        ),
                        **auth_errors,
                        "404": _json("CallResponse", "Unknown tool"),
                        "413": error,
                        "502": _json("CallResponse", "Upstream unreachable or failed"),
                        "503": _json("CallResponse", "Audit log unavailable: not forwarded"),
                        "504": _json("CallResponse", "Upstream timed out"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "Alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: policy, database, upstreams",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": {"description": "Not ready"},
                    },
                }
            },
        },
    }
