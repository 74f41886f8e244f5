"""What the call path writes to the audit log about one operation (`gateway.pipeline`).

- ``call.attempt`` and ``call.decision``, appended together and durable before
  anything is forwarded: what of the arguments and of the policy input may be
  recorded is `gateway.recording`'s to say;
- ``call.outcome``, queued, not awaited (docs/decisions/0005): the call has happened,
  so waiting for its commit would change nothing in the log, only delay the answer. A
  result outside I-JSON is refused here — it ran, but what the agent would be given
  could not be recorded, so it is neither hashed, audited nor passed on;
- an outcome saying ``"forwarded": false`` for a call whose attempt and decision were
  in a COMMIT the connection lost (`AuditCommitUnknown`): the database may have kept
  them, and the log must not then show the call allowed with its outcome unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway import telemetry
from gateway.audit import AuditLog, AuditRecord
from gateway.canonical import MAX_NESTING, NotIJson, arguments_hash, check_document, sha256_hex
from gateway.errors import AuditUnavailable, GatewayError, UpstreamResultRefused
from gateway.operations import Operation
from gateway.recording import recordable, recordable_arguments
from gateway.types import Decision, McpResult, ToolResult
from gateway.upstreams.catalog import Target

log = logging.getLogger("gateway.pipeline")

# A result may nest deeper than arguments (the upstream wraps what it was given), but
# not without bound: every reader of it recurses per level.
MAX_RESULT_NESTING = 2 * MAX_NESTING


def attempt_and_decision(
    call: Operation,
    target: Target | None,
    decision: Decision,
    policy_input: dict[str, Any] | None,
    *,
    hashable: bool = True,
) -> tuple[AuditRecord, AuditRecord]:
    """The two records appended in one transaction before a call goes on. Arguments
    that are not ``hashable`` (refused as not I-JSON) are recorded without a hash."""
    attempt = {
        "request_id": call.request_id,
        "transport": call.transport,
        "principal": call.principal.to_audit(),
        "method": call.method,
        # The target's gateway name: a tool, a prompt, a resource URI, or what a
        # completion completes (the key predates the other methods).
        "tool": call.target,
        "definition_hash": target.definition_hash if target else None,
        "arguments": recordable_arguments(call.arguments, decision),
        "arguments_sha256": arguments_hash(call.arguments) if hashable else None,
        "redacted": list(decision.obligations.redact),
        "client": call.client.to_dict(),
        "run_id": call.run_id,
        "step_id": call.step_id,
    }
    if call.trace is not None:  # traced (gateway.pipeline_tracing): name the trace
        trace_id = telemetry.sampled_trace_id()
        if trace_id is not None:
            attempt["trace_id"] = trace_id
    decided = {
        "request_id": call.request_id,
        "decision": decision.to_dict(),
        "input": None if policy_input is None else recordable(policy_input, decision),
    }
    return (
        AuditRecord("call.attempt", call.request_id, attempt, call.principal.sub, call.target),
        AuditRecord("call.decision", call.request_id, decided, call.principal.sub, call.target),
    )


def checked_result(
    call: Operation,
    target: Target | None,
    result: ToolResult | McpResult | None,
    error: GatewayError | None,
    elapsed: float | None,
) -> tuple[ToolResult | McpResult | None, GatewayError | None, dict[str, Any]]:
    """The result as it may be passed on (I-JSON, else refused) and its outcome record."""
    document = None if result is None else result.to_dict()
    if document is not None:
        try:
            check_document(document, max_depth=MAX_RESULT_NESTING)
        except NotIJson as problem:
            result, document = None, None
            error = UpstreamResultRefused(
                f"the result of {call.target} is refused at {problem.pointer or '/'}: "
                f"{problem.reason}; the {call.method} ran, but its result is not passed on",
                details={"pointer": problem.pointer, "reason": problem.reason},
            )
    payload: dict[str, Any] = {
        "request_id": call.request_id,
        "status": "ok" if error is None else "error",
    }
    if elapsed is not None:
        payload["duration_ms"] = round(elapsed * 1000, 3)
    if result is not None:
        if target is not None:
            payload.update(target.outcome_fields(result))
        elif isinstance(result, ToolResult):
            payload["is_error"] = result.is_error
        payload["result_sha256"] = sha256_hex(document)
    if error is not None:
        payload["error"] = error.to_dict()
    return result, error, payload


def not_forwarded(call: Operation, error: GatewayError) -> dict[str, Any]:
    """The outcome of a call the gateway did not forward because its attempt and
    decision may or may not be in the log; the verifier takes it as finishing the call
    with or without them (`gateway.tlog.verifier`)."""
    return {
        "request_id": call.request_id,
        "status": "error",
        "forwarded": False,
        "error": error.to_dict(),
    }


def submit_outcome(audit: AuditLog, call: Operation, payload: dict[str, Any]) -> None:
    """Queues ``call.outcome``. A failure is logged; the verifier then sees an allowing
    decision without an outcome (reported as outcome unknown)."""
    record = AuditRecord("call.outcome", call.request_id, payload, call.principal.sub, call.target)
    try:
        audit.submit(record).add_done_callback(_outcome_logged(call.request_id))
    except AuditUnavailable as exc:
        log.error("outcome of %s not recorded: %s", call.request_id, exc.message)


def _outcome_logged(request_id: str) -> Callable[[asyncio.Future[list[int]]], None]:
    def check(future: asyncio.Future[list[int]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("outcome of %s not recorded: %s", request_id, error)

    return check
