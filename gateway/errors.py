"""Every failure the gateway reports, as one exception hierarchy.

Each error carries a stable machine-readable ``code`` (documented, never renamed),
the HTTP status the REST surface answers with and the JSON-RPC code the MCP surface
answers with. Surfaces never invent their own mapping: they read these attributes.

Verification code raises instead of returning a flag, so a forgotten ``if`` cannot
turn a failure into success.
"""

from __future__ import annotations

import asyncio
from typing import Any

# JSON-RPC 2.0 codes used by the MCP surface.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server error (JSON-RPC reserves -32000 to -32099): the gateway
# is overloaded; retry later (``data.details.retry_after_s``).
SERVER_BUSY = -32000
# Implementation-defined: a limit policy set on the call is reached (the HTTP 429 of
# JSON-RPC); retry after ``data.retry_after_s`` seconds.
RATE_LIMITED = -32029
# Implementation-defined: the gateway refused a request whose result has no place for a
# refusal (resources/read, prompts/get, completion/complete; a tool call's refusal is a
# result with isError). ``data`` holds the decision like a tool result's ``_meta``.
REFUSED = -32060


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    code: str = "gateway_error"
    http_status: int = 500
    jsonrpc_code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


# --- configuration -----------------------------------------------------------------


class ConfigError(GatewayError):
    """The configuration file is missing, unreadable or invalid."""

    code = "config_invalid"


# --- requests --------------------------------------------------------------------


class BadRequest(GatewayError):
    """The request itself is malformed (not JSON, wrong shape)."""

    code = "bad_request"
    http_status = 400
    jsonrpc_code = INVALID_REQUEST


class RequestTooLarge(BadRequest):
    code = "request_too_large"
    http_status = 413


class UnknownTarget(GatewayError):
    """No such tool, prompt or resource behind the gateway (invalid params in MCP)."""

    code = "unknown_target"
    http_status = 404
    jsonrpc_code = INVALID_PARAMS


class UnknownTool(UnknownTarget):
    code = "unknown_tool"


class UnknownPrompt(UnknownTarget):
    code = "unknown_prompt"


class UnknownResource(UnknownTarget):
    """A resource URI the gateway cannot route: not ``gateway:<upstream>/…``, or naming
    no upstream it serves (the MCP specification's resource-not-found, -32602 with
    ``data.uri``)."""

    code = "resource_not_found"


class InvalidArguments(GatewayError):
    """Arguments do not match the tool's input schema; checked before policy."""

    code = "invalid_arguments"
    http_status = 400
    jsonrpc_code = INVALID_PARAMS


# --- pinned tool definitions (architecture.md §7) ----------------------------------------------


class DefinitionQuarantined(GatewayError):
    """A prompt's, resource's or resource template's definition changed since it was
    approved; it is hidden and refused until an approver approves the new definition."""

    code = "definition_quarantined"
    http_status = 409
    jsonrpc_code = REFUSED


class ToolQuarantined(DefinitionQuarantined):
    """The tool's definition changed since it was approved; it is hidden and refused
    until an approver approves the new definition. 409: the tool exists, but its
    current state forbids calls; the same call succeeds once the state changes."""

    code = "tool_quarantined"
    jsonrpc_code = INVALID_PARAMS


class DefinitionNotPending(GatewayError):
    """An approval named a definition that is not the one awaiting approval (it was
    approved already, or the upstream changed it again since the approver looked)."""

    code = "definition_not_pending"
    http_status = 409


class PinConfigured(GatewayError):
    """The tool is pinned in the config file (``upstreams[].pins``); only a config
    change can approve another definition."""

    code = "pin_configured"
    http_status = 409


class NotAnApprover(GatewayError):
    """A valid token without a role that may approve tool definitions."""

    code = "not_an_approver"
    http_status = 403


class NotAnAuditor(GatewayError):
    """A valid token without a role that may read audit entries (audit.reader_roles)."""

    code = "not_an_auditor"
    http_status = 403


# --- identity --------------------------------------------------------------------


class AuthenticationError(GatewayError):
    """No usable bearer token: missing, malformed, badly signed, expired, wrong audience."""

    code = "unauthenticated"
    http_status = 401
    jsonrpc_code = INVALID_REQUEST


class AuthorizationHeaderInvalid(AuthenticationError):
    """The request carries the Authorization header more than once: which one counts
    would be a guess (RFC 6750 §3.1 ``invalid_request``)."""

    code = "invalid_request"
    http_status = 400


class InsufficientScope(GatewayError):
    """A valid token that lacks a scope the gateway requires."""

    code = "insufficient_scope"
    http_status = 403
    jsonrpc_code = INVALID_REQUEST


class KeyUnavailable(AuthenticationError):
    """The issuer's keys could not be fetched; tokens cannot be verified (fail closed)."""

    code = "issuer_keys_unavailable"


# --- policy ----------------------------------------------------------------------


class PolicyError(GatewayError):
    """The policy engine failed to produce a valid decision. Always means deny."""

    code = "policy_error"
    http_status = 503


class RetryLater(GatewayError):
    """Not a denial: the same call may succeed later, after ``retry_after_s`` seconds
    (REST: ``Retry-After``; MCP: a JSON-RPC error with ``retry_after_s`` in its data,
    never a tool result that reads like a refusal)."""

    jsonrpc_code = SERVER_BUSY

    def __init__(
        self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={**(details or {}), "retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class NoDecision(PolicyError):
    """The engine gave no answer at all: it is unreachable, the connection failed, or
    no answer came within the deadline. The gateway cannot tell a slow policy from a
    starved machine or a lost sidecar, so this is unavailability, never a denial
    (`gateway.policy.engine.decide` turns it into `PolicyUnavailable`; ADR 0032)."""


class PolicyUnavailable(RetryLater):
    """No decision could be had: none could start in time (the engine's queue is full,
    or no evaluation slot came free within the wait), or the engine gave no answer
    (`NoDecision`). Not a denial: nothing was decided, and the same call may succeed a
    moment later (``Retry-After``)."""

    code = "policy_unavailable"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class PolicyLoadError(PolicyError):
    """A policy failed to load or compile."""

    code = "policy_load_failed"


class CallDenied(GatewayError):
    """Policy (or the gateway's own checks) refused the call."""

    code = "denied"
    http_status = 403
    jsonrpc_code = REFUSED


class ApprovalRequired(CallDenied):
    """Policy allows the call only after a human approves it."""

    code = "approval_required"


# --- upstreams -------------------------------------------------------------------


class UpstreamError(GatewayError):
    """The upstream tool could not be reached or failed at the transport level."""

    code = "upstream_error"
    http_status = 502


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamSessionsExhausted(UpstreamUnavailable):
    """A calling session needs an upstream session of its own (docs/decisions/0034) and
    this process already holds ``mcp.sessions.max_upstream_sessions`` of them: the
    request is not forwarded (never on the shared connection instead)."""

    code = "upstream_sessions_exhausted"
    http_status = 503


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    http_status = 504


class UpstreamRejected(UpstreamError):
    """The upstream answered with a JSON-RPC error (for a read, a prompt or a completion,
    relayed to the client with the upstream's code and message)."""

    code = "upstream_rejected"

    def __init__(
        self, message: str, *, rpc_code: int, rpc_message: str, rpc_data: Any = None
    ) -> None:
        super().__init__(message, details={"jsonrpc_code": rpc_code})
        self.rpc_code = rpc_code
        self.rpc_message = rpc_message
        self.rpc_data = rpc_data


class UpstreamResultRefused(UpstreamError):
    """The upstream answered, but with a result the gateway does not pass on."""

    code = "upstream_result_refused"


class ClientInputRefused(GatewayError):
    """An upstream's request for client input (elicitation, sampling, roots) was not
    relayed — denied by policy, a capability the client did not declare, no way to
    reach it — or the client answered it with an error. The upstream gets it as a
    JSON-RPC error (``rpc_code``) in place of the client's answer."""

    code = "client_input_refused"
    http_status = 403
    jsonrpc_code = REFUSED

    def __init__(self, message: str, *, rpc_code: int = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code


class RelayStateRefused(GatewayError):
    """A 2026-07-28 retry carried a ``requestState`` the gateway did not issue to this
    caller for this request, or one that expired or was already used (docs/mcp.md,
    "Requests for client input"). ``details.reason`` says which."""

    code = "request_state_refused"
    http_status = 400
    jsonrpc_code = INVALID_PARAMS

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason


# --- storage and audit -------------------------------------------------------------


class StorageError(GatewayError):
    code = "storage_error"
    http_status = 503


class CallLimited(RetryLater):
    """A limit that policy put on the call (calls per window, or concurrent calls) is
    reached; the call was not forwarded. ``details`` names the limit and when to retry."""

    code = "rate_limited"
    http_status = 429
    jsonrpc_code = RATE_LIMITED


class LimitsUnavailable(RetryLater):
    """The call has limits, and their counters in the database could not be read or
    written: the call is refused, never forwarded uncounted (fail closed)."""

    code = "limits_unavailable"
    http_status = 503


# How long a client is asked to wait when the database or the audit log is
# unavailable: a restart of the database, or a failover, takes seconds.
STORAGE_RETRY_AFTER_S = 2


class StorageUnavailable(StorageError, RetryLater):
    """The database or the audit log could not be used now: nothing was decided or
    forwarded, so 503 with ``Retry-After`` (MCP: -32000 with ``retry_after_s``),
    never a 500 or a denial. The same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: int = STORAGE_RETRY_AFTER_S,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s, details=details)


class DatabaseUnavailable(StorageUnavailable):
    """The database could not be reached (down, restarting, connection cut) while a
    request read or wrote it."""

    code = "database_unavailable"


class AuditUnavailable(StorageUnavailable):
    """The audit record could not be made durable (the database is down, its disk is
    full, the log is shutting down); the call is not forwarded."""

    code = "audit_unavailable"


class AuditCommitUnknown(AuditUnavailable):
    """The connection broke during the COMMIT of the records: the database may or may
    not have kept them, and they are not tried again (that could append them twice).
    For the client the same as `AuditUnavailable`: nothing was forwarded."""


def sole_error(group: BaseExceptionGroup) -> BaseException:
    """The one error inside (nested) task-group exception groups, cancellations left
    aside; the group itself when it holds several errors or none. So that an error
    raised through task groups reads as itself where only one thing went wrong."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        elif not isinstance(exc, asyncio.CancelledError):  # the gateway runs on asyncio
            errors.append(exc)
    return errors[0] if len(errors) == 1 else group
