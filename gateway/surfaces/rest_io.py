"""What every REST handler shares: its JSON body as a pydantic model, and the one way
a `GatewayError` becomes a response.

Handlers raise; they do not build error responses. `gateway.surfaces.auth.error_handler`
answers whatever `GatewayError` they raise: authentication and scope errors with the
RFC 6750 / RFC 9728 challenge, every other one as ``{"error": …, "request_id": …}``
(`error_response`) with the error's status.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.errors import BadRequest, GatewayError, RetryLater

M = TypeVar("M", bound=BaseModel)


def error_response(error: GatewayError, request_id: str | None) -> JSONResponse:
    body: dict[str, Any] = {"error": error.to_dict()}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=error.http_status, headers=retry_headers(error))


def retry_headers(error: Any) -> dict[str, str]:
    """``Retry-After`` for an error that says when to try again (RFC 9110 §10.2.3)."""
    if isinstance(error, RetryLater):
        return {"Retry-After": str(error.retry_after_s)}
    return {}


async def json_body(request: Request, model: type[M]) -> M:
    """The request body as ``model``; an empty body is ``{}``. Raises BadRequest naming
    the first problem: not JSON, or the field that does not validate."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to read") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "body"
        raise BadRequest(f"request body is invalid: {where}: {problem['msg']}") from None
