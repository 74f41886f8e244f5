"""The OpenAPI 3.1 document of the REST surface, generated from its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from gateway.surfaces.approvals_api import ApprovalBody, ApprovalList, DecisionRequest
from gateway.surfaces.audit_explorer import OPENAPI_MODELS as AUDIT_MODELS
from gateway.surfaces.audit_explorer import openapi_paths as audit_openapi_paths
from gateway.surfaces.audit_proofs import OPENAPI_MODELS as PROOF_MODELS
from gateway.surfaces.audit_proofs import openapi_paths as proof_openapi_paths
from gateway.surfaces.pins import openapi_paths as pin_openapi_paths
from gateway.surfaces.rest import CallRequest, CallResponse, ErrorBody, ToolList
from gateway.surfaces.runs import OPENAPI_MODELS as RUN_MODELS
from gateway.surfaces.runs import openapi_paths as run_openapi_paths
from gateway.surfaces.workflows_api import OPENAPI_MODELS as WORKFLOW_MODELS
from gateway.surfaces.workflows_api import openapi_paths as workflow_openapi_paths
from gateway.version import __version__

_REF = "#/components/schemas/{model}"
REST_MODELS = (CallRequest, CallResponse, ErrorBody, ToolList)
APPROVAL_MODELS = (ApprovalBody, ApprovalList, DecisionRequest)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def build_openapi(public_url: str) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (m, "validation")
            for m in (
                *REST_MODELS,
                *APPROVAL_MODELS,
                *RUN_MODELS,
                *WORKFLOW_MODELS,
                *AUDIT_MODELS,
                *PROOF_MODELS,
            )
        ],
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
    document = {
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
                        "409": _json(
                            "CallResponse", "Tool quarantined: its definition changed (not run)"
                        ),
                        "413": error,
                        "429": _json(
                            "CallResponse",
                            "A limit policy set on the call is reached (rate_limited; see "
                            "Retry-After): not forwarded",
                        ),
                        "502": _json("CallResponse", "Upstream unreachable or failed"),
                        "503": _json(
                            "CallResponse",
                            "Audit log, policy engine or the counters of the call's limits "
                            "unavailable (see Retry-After): not forwarded",
                        ),
                        "504": _json("CallResponse", "Upstream timed out"),
                    },
                }
            },
            **_approval_paths(error, auth_errors),
            **pin_openapi_paths(error, auth_errors),
            **run_openapi_paths(error, auth_errors),
            **workflow_openapi_paths(error, auth_errors),
            **audit_openapi_paths(error, auth_errors),
            **proof_openapi_paths(error, auth_errors),
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
    _declare_common_answers(document["paths"], error)
    return document


def _declare_common_answers(paths: dict[str, Any], error: dict[str, Any]) -> None:
    """What any authenticated operation may answer besides its own answers: 400 for a
    malformed request (a bad parameter or body, or a repeated Authorization header),
    503 when what it needs is unavailable (database, audit log, policy engine)."""
    common = {
        "400": {**error, "description": "Malformed request (parameters, body, headers)"},
        "503": {
            **error,
            "description": "Unavailable (database, audit log, or a policy engine that is "
            "overloaded or gave no answer; see Retry-After): nothing was changed",
        },
    }
    for operations in paths.values():
        for operation in operations.values():
            if operation.get("security") == []:
                continue  # public: no token, nothing behind it that can be down
            for status, answer in common.items():
                operation["responses"].setdefault(status, answer)


def _approval_paths(error: dict[str, Any], auth_errors: dict[str, Any]) -> dict[str, Any]:
    """The approvals API (gateway/surfaces/approvals_api.py, docs/approvals.md)."""
    approval_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "Approval id, apr_…",
    }
    not_found = {**error, "description": "No such approval, or not one the caller may see"}

    def decision(verb: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "operationId": f"{verb}Approval",
                "parameters": [approval_id],
                "requestBody": {
                    "required": verb == "deny",
                    "content": {"application/json": {"schema": _ref("DecisionRequest")}},
                },
                "responses": {
                    "200": _json("ApprovalBody", "Decided"),
                    "400": {**error, "description": "Malformed body; reason_required to deny"},
                    **auth_errors,
                    "403": {
                        **error,
                        "description": "self_approval, not_an_approver or "
                        "decision_denied_by_policy (or a missing scope)",
                    },
                    "404": not_found,
                    "409": {**error, "description": "approval_not_pending: decided or expired"},
                    "503": {**error, "description": "Audit log unavailable: not decided"},
                },
            }
        }

    return {
        "/v1/approvals": {
            "get": {
                "summary": "Approvals the caller requested or may decide, newest first; "
                "with `since`, the changes after that version (oldest first)",
                "operationId": "listApprovals",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "enum": ["pending", "approved", "denied", "expired", "cancelled"]
                        },
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 50}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "integer"},
                        "description": "Only approvals changed after this version",
                    },
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "number", "maximum": 30},
                        "description": "With since: wait up to this many seconds for a change",
                    },
                ],
                "responses": {
                    "200": _json("ApprovalList", "The approvals"),
                    "400": error,
                    **auth_errors,
                },
            }
        },
        "/v1/approvals/{id}": {
            "get": {
                "summary": "One approval",
                "operationId": "getApproval",
                "parameters": [approval_id],
                "responses": {
                    "200": _json("ApprovalBody", "The approval"),
                    **auth_errors,
                    "404": not_found,
                },
            }
        },
        "/v1/approvals/{id}/approve": decision("approve", "Approve a pending call"),
        "/v1/approvals/{id}/deny": decision("deny", "Deny a pending call (reason required)"),
    }
