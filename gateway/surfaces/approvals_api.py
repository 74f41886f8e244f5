"""The approvals REST API: listing, reading and deciding approvals (docs/approvals.md).

    GET  /v1/approvals?status=&limit=        what the caller may see, newest first
    GET  /v1/approvals?since=N&wait=S        changes after version N (long poll ≤ 30 s)
    GET  /v1/approvals/{id}
    POST /v1/approvals/{id}/approve          {"reason": "…"}  (reason optional)
    POST /v1/approvals/{id}/deny             {"reason": "…"}  (reason required)

Every route authenticates with the shared `Authenticator`. Visibility: a caller sees
the approvals it requested and those naming an approver it holds; any other id is
404. Who may decide, and the errors when not, are `ApprovalService.decide`'s
(`gateway.approvals.decisions`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.approvals import Approval, ApprovalService, ApprovalStatus
from gateway.approvals.notify import console_link
from gateway.errors import BadRequest
from gateway.surfaces.auth import client_info, principal_of
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import json_body
from gateway.types import Principal

MAX_LIMIT = 500
MAX_WAIT_S = 30.0


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        None, max_length=2000, description="Why; required to deny, optional to approve"
    )
    channel: Literal["rest", "cli", "console"] = Field(
        "rest", description="Where the decision was made (recorded, informational)"
    )


class Requester(BaseModel):
    sub: str
    iss: str
    act_chain: list[dict[str, Any]]


class OutcomeSummary(BaseModel):
    status: str | None = None
    request_id: str | None = None
    is_error: bool | None = None
    error_code: str | None = None


class WhyNot(BaseModel):
    """Why the caller may not decide an approval: the error a decision would get."""

    code: Literal["self_approval", "not_an_approver", "approval_not_pending"] = Field(
        description="self_approval: the caller requested the call or acts in its "
        "delegation chain; not_an_approver: the caller holds none of `approvers`; "
        "approval_not_pending: already decided, expired or cancelled"
    )
    message: str = Field(description="The same, as a sentence for people")


class ApprovalBody(BaseModel):
    id: str
    status: str = Field(description="pending, approved, denied, expired or cancelled")
    tool: str
    requester: Requester
    arguments: Any = Field(description="The arguments, redacted per the policy's obligations")
    arguments_hash: str = Field(description="SHA-256 (hex) of the JCS of the full arguments")
    definition_hash: str | None = None
    reasons: list[str]
    approvers: list[str] = Field(description="Who may decide: role:<role> or user:<sub>")
    request_id: str = Field(description="The call that asked for this approval")
    created_at: str
    expires_at: str
    decided_by: str | None = Field(None, description="Approver's sub, or system:expiry")
    decided_at: str | None = None
    decision_reason: str | None = None
    channel: str | None = Field(None, description="rest, cli, console or system")
    execution_state: str = Field(description="none, running or done")
    outcome: OutcomeSummary | None = None
    version: int = Field(description="Grows with every change of any approval")
    may_decide: bool = Field(description="Whether the caller may approve or deny it now")
    why_not: WhyNot | None = Field(
        description="When may_decide is false, why not (what a decision would be refused "
        "with); null when the caller may decide"
    )
    console_url: str


class ApprovalList(BaseModel):
    approvals: list[ApprovalBody]
    version: int = Field(description="Pass as `since` to get only later changes")


class ApprovalsApi:
    def __init__(self, service: ApprovalService, *, public_url: str) -> None:
        self._service = service
        self._public_url = public_url

    def routes(self) -> list[Route]:
        return [
            Route("/v1/approvals", self.list, methods=["GET"]),
            Route("/v1/approvals/{id}", self.show, methods=["GET"]),
            Route("/v1/approvals/{id}/approve", self.approve, methods=["POST"]),
            Route("/v1/approvals/{id}/deny", self.deny, methods=["POST"]),
        ]

    async def list(self, request: Request) -> Response:
        principal = principal_of(request)
        query = request.query_params
        limit = _int(query.get("limit"), "limit", default=50, low=1, high=MAX_LIMIT)
        # Checked whether or not it applies: a bad parameter is a 400, never ignored.
        wait = _float(query.get("wait"), "wait", default=0.0, high=MAX_WAIT_S)
        if "wait" in query and "since" not in query:
            raise BadRequest("wait needs since: it waits for changes after that version")
        if "since" in query:
            since = _int(query.get("since"), "since", default=0, low=0, high=2**62)
            changes = await self._service.changes(
                since, timeout_s=wait, principal=principal, limit=limit
            )
            approvals, version = changes.approvals, changes.version
        else:
            status = _status(query.get("status"))
            version = await self._service.current_version()
            approvals = await self._service.list(principal, status=status, limit=limit)
        body = ApprovalList(
            approvals=[self._body(a, principal) for a in approvals], version=version
        )
        return JSONResponse(body.model_dump())

    async def show(self, request: Request) -> Response:
        principal = principal_of(request)
        approval = await self._service.get(request.path_params["id"], principal)
        return JSONResponse(self._body(approval, principal).model_dump())

    async def approve(self, request: Request) -> Response:
        principal = principal_of(request)
        return await self._decide(request, principal, approve=True)

    async def deny(self, request: Request) -> Response:
        principal = principal_of(request)
        return await self._decide(request, principal, approve=False)

    async def _decide(self, request: Request, principal: Principal, *, approve: bool) -> Response:
        body = await json_body(request, DecisionRequest)
        approval = await self._service.decide(
            request.path_params["id"],
            principal,
            approve=approve,
            reason=body.reason,
            channel=body.channel,
            request_id=request_id_of(request),
            client=client_info(request),
        )
        return JSONResponse(self._body(approval, principal).model_dump())

    def _body(self, approval: Approval, principal: Principal) -> ApprovalBody:
        refusal = approval.why_not(principal)
        return ApprovalBody.model_validate(
            {
                **approval.to_dict(),
                "may_decide": refusal is None,
                "why_not": None
                if refusal is None
                else {"code": refusal.code, "message": refusal.message},
                "console_url": console_link(self._public_url, approval.id),
            }
        )


def _status(value: str | None) -> ApprovalStatus | None:
    if value is None or value == "":
        return None
    try:
        return ApprovalStatus(value)
    except ValueError:
        choices = ", ".join(s.value for s in ApprovalStatus)
        raise BadRequest(f"status must be one of: {choices}") from None


def _int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return number


def _float(value: str | None, name: str, *, default: float, high: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds") from None
    if not 0 <= number <= high:
        raise BadRequest(f"{name} must be between 0 and {high:g}")
    return number
