"""Outcomes as MCP answers (docs/mcp.md, "The `_meta` key" and "Errors").

A tool call's refusal is a result with ``isError: true`` (the model reads why), the
decision under ``_meta["io.agentgateway/decision"]``. ``resources/read``,
``prompts/get`` and ``completion/complete`` have no place for a refusal in their
results, so theirs is a JSON-RPC error carrying the same decision under
``data["io.agentgateway/decision"]``; their successful results carry it under
``_meta`` like a tool result's. An upstream's own JSON-RPC error (a resource it does
not have) is relayed with its code and message.
"""

from __future__ import annotations

import logging
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError

from gateway.errors import (
    REFUSED,
    GatewayError,
    RetryLater,
    UnknownTarget,
    UpstreamRejected,
)
from gateway.store import UNREACHABLE, describe_error, unavailable
from gateway.surfaces.mcp_views import View
from gateway.types import McpResult, Outcome, OutcomeStatus, ToolResult

log = logging.getLogger(__name__)

# The one vendor key under `_meta` where the gateway puts its decision (stable: clients
# parse it). Documented in docs/mcp.md.
META_KEY = "io.agentgateway/decision"


def outcome_meta(outcome: Outcome) -> dict[str, Any]:
    """The machine-readable part of an outcome, shared by MCP `_meta` and REST bodies."""
    meta: dict[str, Any] = {"request_id": outcome.request_id, "status": outcome.status.value}
    if isinstance(outcome.error, GatewayError):
        meta["error"] = outcome.error.to_dict()
    if outcome.decision is not None:
        meta["decision"] = outcome.decision.to_dict()
    if outcome.approval_id is not None:
        meta["approval_id"] = outcome.approval_id
    if outcome.replay_of is not None:
        # The recorded outcome of an approved call that ran for that request; this
        # request did not run it again.
        meta["replay_of"] = outcome.replay_of
    return meta


def to_call_tool_result(outcome: Outcome, view: View | None = None) -> dict[str, Any]:
    """The outcome as a ``CallToolResult`` in wire form (JSON names, no nulls): what
    the SDK's server runner takes from a handler and checks against the revision's
    result schema on the way out, on either path (`mcp_direct` does the same). A dict,
    not the model: building and dumping the model again cost as much as that check,
    for content the upstream's answer was already validated into (`to_result`)."""
    meta = {META_KEY: outcome_meta(outcome)}
    if outcome.status is OutcomeStatus.OK and isinstance(outcome.result, ToolResult):
        return tool_result_wire(outcome.result, view or View(), meta)
    error = outcome.error
    message = error.message if isinstance(error, GatewayError) else "the call failed"
    if outcome.status is OutcomeStatus.PENDING_APPROVAL:
        # Already says "pending_approval: …", the approval id and how to retry.
        text = message
    else:
        verb = "was not executed" if outcome.status is OutcomeStatus.DENIED else "failed"
        text = f"The call to {outcome.target} {verb}: {message}"
    return refused_tool_result(text, meta)


def tool_result_wire(
    result: ToolResult, view: View, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A tool result in wire form, its resource URIs in ``view``'s names."""
    wire: dict[str, Any] = {
        "content": [view.content_out(item) for item in result.content],
        "isError": result.is_error,
        "resultType": "complete",
    }
    if result.structured_content is not None:
        wire["structuredContent"] = result.structured_content
    if meta is not None:
        wire["_meta"] = meta
    return wire


def refused_tool_result(text: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A call that did not run (or failed), as the tool result that says why."""
    return {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "resultType": "complete",
        "_meta": meta,
    }


def mcp_result(outcome: Outcome, view: View, *, asked: str, is_uri: bool = False) -> dict[str, Any]:
    """The result document of a read, prompt or completion that succeeded, outward and
    with the decision under ``_meta``; raises `MCPError` for any other outcome.
    ``asked`` is the name or URI (``is_uri``) as the client sent it."""
    if outcome.status is not OutcomeStatus.OK or not isinstance(outcome.result, McpResult):
        raise refusal(outcome, asked=asked, is_uri=is_uri)
    document = outcome.result.document
    if outcome.result.method == "resources/read":
        document = view.read_out(document)
    elif outcome.result.method == "prompts/get":
        document = view.prompt_out(document)
    return {**document, "_meta": {META_KEY: outcome_meta(outcome)}}


def refusal(outcome: Outcome, *, asked: str, is_uri: bool) -> MCPError:
    """A read's, prompt's or completion's outcome other than success, as the JSON-RPC
    error that answers it."""
    error = outcome.error
    data: dict[str, Any] = {META_KEY: outcome_meta(outcome)}
    if is_uri:
        data["uri"] = asked  # the specification's resource-not-found names the URI
    if isinstance(error, UpstreamRejected):
        return MCPError(code=error.rpc_code, message=error.rpc_message, data=data)
    if isinstance(error, RetryLater):
        # Overloaded, limited, the database or audit log unavailable: when to retry,
        # where a client looks for it.
        return MCPError(
            code=error.jsonrpc_code, message=error.message, data={**data, **error.details}
        )
    if isinstance(error, UnknownTarget):
        return MCPError(code=error.jsonrpc_code, message=error.message, data=data)
    if isinstance(error, GatewayError):
        # Refusals (policy, pinning, approvals) and bad input keep their codes; the
        # rest (an upstream down or failing) is an internal error.
        refused = error.jsonrpc_code in (types.INVALID_PARAMS, REFUSED)
        code = error.jsonrpc_code if refused else types.INTERNAL_ERROR
        return MCPError(code=code, message=error.message, data=data)
    return MCPError(code=types.INTERNAL_ERROR, message="the request failed", data=data)


async def unavailability_as_retry(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Server middleware: a request of any method that found the database, the audit
    log or the policy engine unavailable is answered JSON-RPC -32000 with
    ``retry_after_s`` (what REST answers 503 + ``Retry-After``), never -32603: nothing
    was decided, and the same request may succeed later."""
    try:
        return await call_next(ctx)
    except (RetryLater, *UNREACHABLE) as error:
        raise as_retry(error, ctx.method) from None


def as_retry(error: Exception, method: str) -> Exception:
    """The error a request of ``method`` answers for ``error``: -32000 with a retry
    hint for unavailability (`unavailability_as_retry`, and the direct path's
    `mcp_direct`), ``error`` itself otherwise."""
    if isinstance(error, RetryLater):
        return _retry(error)
    if isinstance(error, UNREACHABLE):
        log.warning("%s: database unavailable (%s)", method, describe_error(error))
        return _retry(unavailable())
    return error


def _retry(error: RetryLater) -> MCPError:
    return MCPError(code=error.jsonrpc_code, message=error.message, data=error.details)
