"""What an MCP client declared it can be asked, as the relay of an upstream's requests
for client input reads it (docs/mcp.md, "Requests for client input"): whether a
request's kind (elicitation, sampling, roots) is among the client's capabilities, the
part of them the gateway relays, and the capabilities a 2026-07-28 request declares in
its ``_meta``.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp_types import CLIENT_CAPABILITIES_META_KEY

from gateway.operations import InputRequest


def declares(capabilities: types.ClientCapabilities | None, request: InputRequest) -> bool:
    """Whether the client declared what ``request`` needs (an empty ``elicitation``
    object means form mode, as the specification reads it)."""
    if capabilities is None:
        return False
    if request.method == "elicitation/create":
        elicitation = capabilities.elicitation
        if elicitation is None:
            return False
        if request.params.get("mode", "form") == "url":
            return elicitation.url is not None
        return elicitation.form is not None or elicitation.url is None
    if request.method == "sampling/createMessage":
        return capabilities.sampling is not None
    return capabilities.roots is not None


def relayable(capabilities: types.ClientCapabilities | None) -> dict[str, Any]:
    """The part of ``capabilities`` the gateway relays, in MCP spelling."""
    if capabilities is None:
        return {}
    dumped = capabilities.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {key: dumped[key] for key in ("elicitation", "sampling", "roots") if key in dumped}


def capabilities_of(meta: Any) -> types.ClientCapabilities | None:
    """The capabilities a 2026-07-28 request declares in its ``_meta`` envelope."""
    if hasattr(meta, "model_dump"):
        meta = meta.model_dump(by_alias=True)
    raw = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return types.ClientCapabilities.model_validate(raw, by_name=False)
    except ValueError:
        return None


def declares_any(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the client declared any of elicitation, sampling and roots."""
    return capabilities is not None and any(
        part is not None
        for part in (capabilities.elicitation, capabilities.sampling, capabilities.roots)
    )
