"""Bearer authentication shared by every surface, and the RFC 9728 metadata it points to.

A 401 carries ``WWW-Authenticate: Bearer resource_metadata="…"`` so an MCP client can
discover where to get a token; a 403 names the missing scope (RFC 6750 §3.1).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import (
    AuthenticationError,
    AuthorizationHeaderInvalid,
    GatewayError,
    InsufficientScope,
)
from gateway.identity import TokenVerifier
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import error_response
from gateway.types import ClientInfo, Principal

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


class _Surface(Protocol):
    _auth: Authenticator


Handler = Callable[[Any, Request, Principal], Awaitable[Response]]


def authenticated(handler: Handler) -> Callable[[Any, Request], Awaitable[Response]]:
    """Wraps a REST handler method: the caller's Principal is passed in, and a request
    without a valid token gets the 401/403 challenge instead, the handler never runs.
    A `GatewayError` the handler raises is its answer (gateway.surfaces.rest_io)."""

    @functools.wraps(handler)
    async def wrapper(surface: _Surface, request: Request) -> Response:
        try:
            principal = await surface._auth.authenticate(request)
            return await handler(surface, request, principal)
        except GatewayError as error:
            if is_auth_error(error):
                return surface._auth.challenge(error, request_id=request_id_of(request))
            return error_response(error, request_id_of(request))

    return wrapper
