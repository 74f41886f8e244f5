"""What a 2026-07-28 upstream is told the client can be asked, per request, on the SDK
path as on the lean one.

At 2026-07-28 a request carries the client's capabilities in its ``_meta``; an upstream
asks (elicitation, sampling, roots) only for what they say. The lean path
(`mcp_lean_call`) declares, for each request made on behalf of a caller, what that
caller declared and the gateway can relay. The SDK's client stamps every request with
the capabilities of its connection instead (all three: the connection is shared), and
overwrites any the caller puts in ``_meta``. So each connection's stamp is wrapped
(`declare_per_request`): inside `declaring`, the request carries the capabilities
given there; outside (lists, subscriptions, completions) the connection's own.

A 2025-11-25 connection has no per-request capabilities: they are fixed at the
``initialize`` handshake of the shared connection (docs/mcp.md, "Requests for client
input"); the gateway then refuses, itself, a request for one the caller lacks.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

from mcp.client.session import ClientSession
from mcp_types import CLIENT_CAPABILITIES_META_KEY

from gateway.operations import ClientInput

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

_DECLARED: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "gateway_upstream_declared_capabilities", default=None
)
_WRAPPED = "_gateway_per_request_capabilities"


def of(client_input: ClientInput | None, *, tasks: bool = False) -> dict[str, Any]:
    """The capabilities to declare for a request on behalf of a caller: what it declared
    that the gateway relays (nothing without a way to ask it), and the tasks extension
    when the request is to become the upstream's task."""
    declared = dict(client_input.capabilities) if client_input is not None else {}
    if tasks:
        extensions = dict(declared.get("extensions") or {})
        extensions[TASKS_EXTENSION] = {}
        declared["extensions"] = extensions
    return declared


@contextlib.contextmanager
def declaring(capabilities: Mapping[str, Any] | None) -> Iterator[None]:
    """Requests sent inside declare ``capabilities`` (None: the connection's)."""
    token = _DECLARED.set(None if capabilities is None else dict(capabilities))
    try:
        yield
    finally:
        _DECLARED.reset(token)


def declare_per_request(session: ClientSession) -> None:
    """Wraps the session's request stamp (once) so that a modern request carries the
    capabilities `declaring` set. The SDK runs the stamp in the caller's task, where
    the context variable is set; a handshake-era stamp writes no ``_meta`` and is left
    as it is."""
    stamp = session._stamp  # the SDK has no public hook for per-request capabilities
    if getattr(stamp, _WRAPPED, False):
        return

    def stamped(data: dict[str, Any], opts: Any) -> None:
        stamp(data, opts)
        declared = _DECLARED.get()
        meta = (data.get("params") or {}).get("_meta")
        if declared is not None and isinstance(meta, dict) and CLIENT_CAPABILITIES_META_KEY in meta:
            meta[CLIENT_CAPABILITIES_META_KEY] = declared

    setattr(stamped, _WRAPPED, True)
    session._stamp = stamped  # type: ignore[method-assign]
