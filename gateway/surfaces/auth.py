"""Bearer authentication of every request, and the RFC 9728 metadata it points to.

Protected by default: `AuthenticationMiddleware` is one entry of the ordered middleware
list in `gateway.app`, in front of every route, and only `PUBLIC_PATHS` pass without a
token. Handlers read the caller with `principal_of`.

A 401 carries ``WWW-Authenticate: Bearer resource_metadata="…"`` so an MCP client can
discover where to get a token; a 403 names the missing scope (RFC 6750 §3.1).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import (
    AuthenticationError,
    AuthorizationHeaderInvalid,
    GatewayError,
    InsufficientScope,
)
from gateway.identity import TokenVerifier
from gateway.store import describe_error, unavailable
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import error_response
from gateway.types import ClientInfo, Principal

log = logging.getLogger(__name__)

PRINCIPAL_STATE_KEY = "principal"
METADATA_PATH = "/.well-known/oauth-protected-resource"


class Authenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        public_url: str,
        resource: str,
        issuers: list[str],
        scopes: list[str],
    ) -> None:
        self._verifier = verifier
        self._metadata_url = public_url.rstrip("/") + METADATA_PATH
        self._resource = resource
        self._issuers = issuers
        self._scopes = scopes

    async def authenticate(self, request: Request) -> Principal:
        """The request's principal; raises AuthenticationError (or InsufficientScope)."""
        given = request.headers.getlist("authorization")
        if len(given) > 1:
            raise AuthorizationHeaderInvalid(
                f"the request carries {len(given)} Authorization headers; send exactly one"
            )
        return await self._verifier.verify(given[0] if given else None)

    def challenge(self, error: GatewayError, *, request_id: str | None = None) -> Response:
        """The 401/403 response for an authentication failure."""
        if isinstance(error, InsufficientScope):
            params = 'error="insufficient_scope"'
            if self._scopes:
                params += f', scope="{" ".join(self._scopes)}"'
        elif isinstance(error, AuthorizationHeaderInvalid):
            params = 'error="invalid_request"'
        else:
            params = 'error="invalid_token"'
        description = error.message.replace('"', "'")
        header = (
            f'Bearer resource_metadata="{self._metadata_url}", {params}, '
            f'error_description="{description}"'
        )
        body: dict[str, Any] = {"error": error.to_dict()}
        if request_id:
            body["request_id"] = request_id
        return JSONResponse(
            body, status_code=error.http_status, headers={"WWW-Authenticate": header}
        )

    def metadata(self, resource: str | None = None) -> dict[str, Any]:
        """RFC 9728 protected resource metadata."""
        return {
            "resource": resource or self._resource,
            "authorization_servers": self._issuers,
            "bearer_methods_supported": ["header"],
            "scopes_supported": self._scopes,
            "resource_name": "Agent tool gateway",
        }


def client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def is_auth_error(error: GatewayError) -> bool:
    return isinstance(error, AuthenticationError | InsufficientScope)


# --- protected by default ------------------------------------------------------------
# Every path needs a valid bearer token except these, which serve what a client needs
# before it has one (discovery, keys, the console's static pages that ask for a token)
# or what monitoring reads. A new route is protected unless it is added here, and a
# test holds this list to the routes that exist (tests/unit/surfaces/test_public_paths).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        METADATA_PATH,
        METADATA_PATH + "/mcp",
        "/.well-known/jwks.json",
        "/v1/audit/checkpoint",
        "/v1/audit/keys",
        "/console",
        "/console/",
        "/console/audit",
    }
)
PUBLIC_PREFIXES = ("/console/static/",)


def is_public(method: str, path: str) -> bool:
    """Whether a request needs no token: a public path, or OPTIONS (which names a
    path's methods and nothing else; gateway.surfaces.routing)."""
    return method == "OPTIONS" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class AuthenticationMiddleware:
    """Authenticates every HTTP request that is not public (`is_public`) before any
    route sees it: a request without a valid token gets the 401/403 challenge and goes
    no further; an authenticated one carries its `Principal` to the handlers
    (`principal_of`)."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator) -> None:
        self.app = app
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._authenticator.authenticate(Request(scope))
        except GatewayError as error:
            request_id = scope.get("state", {}).get("request_id")
            response = self._authenticator.challenge(error, request_id=request_id)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
        await self.app(scope, receive, send)


def principal_of(request: Request) -> Principal:
    """The principal `AuthenticationMiddleware` authenticated for ``request``. Fails
    closed (401) if there is none: a handler of a public path must not ask."""
    principal = getattr(request.state, PRINCIPAL_STATE_KEY, None)
    if not isinstance(principal, Principal):
        raise AuthenticationError("not authenticated", details={"reason": "missing_token"})
    return principal


def error_handler(
    authenticator: Authenticator,
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The one answer to a `GatewayError` a handler raises: authentication and scope
    errors as the challenge, every other one as ``{"error": …, "request_id": …}`` with
    its status (gateway.surfaces.rest_io)."""

    async def answer(request: Request, error: Exception) -> Response:
        assert isinstance(error, GatewayError)
        if is_auth_error(error):
            return authenticator.challenge(error, request_id=request_id_of(request))
        return error_response(error, request_id_of(request))

    return answer


async def database_unreachable(request: Request, error: Exception) -> Response:
    """A driver error meaning the database cannot be reached (`gateway.store.UNREACHABLE`)
    that a handler did not turn into its own error: 503 `database_unavailable`, as
    every unavailability is, never a 500 (the database may be restarting)."""
    log.warning(
        "%s %s: database unavailable (%s)", request.method, request.url.path, describe_error(error)
    )
    return error_response(unavailable(), request_id_of(request))
