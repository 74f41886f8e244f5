"""A request on an upstream session of its own, for a caller that declared roots.

Why: an upstream of the handshake era (2025-11-25) learns a client's roots per
session and may keep them — server-everything asks once per session and caches the
answer. The gateway's connection to an upstream is shared by all its callers, so roots
one caller answered on it would be what the upstream believes of every later caller's
roots: one client's workspace paths served to another principal's calls. So:

- a request on behalf of a caller that declared ``roots``, to an upstream that
  negotiated 2025-11-25 over Streamable HTTP, goes on a session opened for that request
  alone and closed after it (`run`): whatever the upstream keeps of its roots dies with
  it, and its requests for input reach only that caller;
- on the shared connection nobody's roots are ever answered: a caller that declared
  roots never uses it for its requests, the relay refuses the others (an undeclared
  capability), and a request outside any request has no caller to ask;
- over stdio a session of one's own would be a process of one's own: the connection's
  roots requests are refused (`mcp_requests.relay_input`), and roots are not available
  through the gateway from a 2025-11-25 stdio upstream;
- at 2026-07-28 there is no session: roots are asked per request (``input_required``),
  and nothing is shared.

The cost is a handshake per such request (docs/mcp.md, "Requests for client input").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.types import ClientInput
from gateway.upstreams.mcp_lean_call import is_sessionless
from gateway.upstreams.mcp_requests import describe

_T = TypeVar("_T")


def wanted(shared: Client, client_input: ClientInput | None, *, stdio: bool) -> bool:
    """Whether a caller's request needs a session of its own (see the module's doc)."""
    return (
        not stdio
        and client_input is not None
        and "roots" in client_input.capabilities
        and not is_sessionless(shared.protocol_version)
    )


async def run(
    upstream: str, make_client: Callable[[], Client], send: Callable[[Client], Awaitable[_T]]
) -> _T:
    """``send`` on a new session of ``upstream``, closed when it returns. A failure of
    that session is this request's alone: it never marks the shared connection broken."""
    try:
        async with make_client() as client:
            return await send(client)
    except (GatewayError, MCPError):
        raise  # the request's own answer: mapped by `mcp_requests.run` as any other
    except ExceptionGroup as group:
        first = group.exceptions[0] if len(group.exceptions) == 1 else None
        if isinstance(first, GatewayError | MCPError):
            raise first from None
        raise UpstreamUnavailable(
            f"upstream {upstream}: a session of its own failed: {describe(group)}"
        ) from None
    except Exception as exc:
        raise UpstreamUnavailable(
            f"upstream {upstream}: a session of its own failed: {describe(exc)}"
        ) from None


@contextlib.asynccontextmanager
async def http_transport(url: str, http: httpx2.AsyncClient) -> AsyncIterator[Any]:
    """The SDK's Streamable HTTP transport on ``http``, which is closed with it: the SDK
    leaves a client it was given open, and a session per request must not leave a
    connection pool behind."""
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams
