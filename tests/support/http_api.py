"""A test HTTP API upstream (plain REST, no MCP) that records what it receives.

    python -m tests.support.http_api PORT CALL_LOG [JWKS_URL]

With JWKS_URL it verifies the bearer token as the gateway-minted upstream JWT and
records its claims; a request with a bad token gets 401.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CALL_LOG = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/dev/null")
JWKS_URL = sys.argv[3] if len(sys.argv) > 3 else None
AUDIENCE = "http://test-api.local"


def _claims(request: Request) -> dict[str, Any] | None:
    if JWKS_URL is None:
        return None
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ")
    keys = jwt.PyJWKSet.from_dict(httpx.get(JWKS_URL).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["EdDSA"], audience=AUDIENCE)


async def record(request: Request) -> JSONResponse:
    try:
        claims = _claims(request)
    except Exception as exc:  # the test asserts on this status
        return JSONResponse({"error": f"bad token: {exc}"}, status_code=401)
    body = await request.body()
    entry = {
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.query_params),
        "json": json.loads(body) if body else None,
        "authorization": request.headers.get("authorization"),
        "idempotency_key": request.headers.get("idempotency-key"),
        "traceparent": request.headers.get("traceparent"),
        "claims": claims,
    }
    with CALL_LOG.open("a") as log:
        log.write(json.dumps(entry) + "\n")
    if request.path_params.get("item") == "missing":
        return JSONResponse({"error": "no such item"}, status_code=404)
    return JSONResponse(
        {"ok": True, "path": request.url.path, "echo": entry["json"] or entry["query"]}
    )


async def nested(request: Request) -> JSONResponse:
    """A result nested ``depth`` lists deep, for tests of what the gateway reads back."""
    value: Any = "bottom"
    for _ in range(int(request.path_params["depth"])):
        value = [value]
    return JSONResponse({"nested": value})


app = Starlette(
    routes=[
        Route("/nested/{depth:int}", nested, methods=["GET"]),
        Route("/items/{item}", record, methods=["GET", "DELETE"]),
        Route("/items", record, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
