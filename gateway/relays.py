"""What an upstream asks of the calling client — elicitation, sampling, roots — under
policy and in the audit log (docs/mcp.md, "Requests for client input";
docs/decisions/0019).

An upstream asks while it answers an operation; the surface knows how to reach the
client that made it (`ClientChannel`: a request on the call's stream in a 2025-11-25
session, an ``input_required`` result at 2026-07-28, or nothing). `Relays.governed`
wraps that channel in the one rule every relayed request follows, in this order:

1. the client declared the capability (elicitation and its mode, sampling, roots),
   else refused by the gateway without asking policy;
2. a policy decision, action = the request's method (``elicitation/create``,
   ``sampling/createMessage``, ``roots/list``), resource = the upstream, what it
   answers, and for elicitation its mode and, in URL mode, the URL's host;
3. the decision durable in the audit log (``relay.decision``) before the client is
   asked — fail closed: no record, no question;
4. only if every request of the round is allowed, the client is asked; its answers
   are recorded by hash (``relay.answer``).

Anything refused raises `ClientInputRefused`: the upstream gets a JSON-RPC error in
place of an answer, and the client is never asked.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.audit import AuditLog, AuditRecord
from gateway.canonical import sha256_hex
from gateway.errors import AuditUnavailable, ClientInputRefused, PolicyUnavailable
from gateway.operations import ClientInput, InputAsk, InputRequest, Operation
from gateway.policy import build_input
from gateway.policy.decider import Decider
from gateway.recording import recordable
from gateway.types import GATEWAY_ENGINE, UNAVAILABLE_RULE, Decision, deny

log = logging.getLogger(__name__)


class ClientChannel(Protocol):
    """How the client that made an operation is asked something."""

    def declared(self, request: InputRequest) -> bool:
        """Whether the client declared the capability this request needs."""
        ...

    def capabilities(self) -> dict[str, Any]:
        """What of elicitation, sampling and roots the client declared and can be
        asked through this channel (MCP spelling; empty when it cannot be asked)."""
        ...

    def unreachable(self) -> str | None:
        """Why the client cannot be asked anything at all here, or None."""
        ...

    async def ask(
        self, upstream: str, requests: dict[str, InputRequest]
    ) -> dict[str, dict[str, Any]]:
        """Its answers (MCP result documents) under the same keys; raises
        `ClientInputRefused` if it answered with an error or cannot be reached."""
        ...


class Relays:
    def __init__(self, decider: Decider, audit: AuditLog) -> None:
        self._decider = decider
        self._audit = audit

    def with_channel(self, operation: Operation, channel: ClientChannel) -> Operation:
        """``operation`` whose upstream's requests for client input go through ``channel``
        under policy."""

        async def check(upstream: str, request: InputRequest) -> None:
            await self._decide(operation, upstream, "error", request, channel)

        client_input = ClientInput(self.governed(operation, channel), channel.capabilities(), check)
        return replace(operation, client_input=client_input)

    def governed(self, operation: Operation, channel: ClientChannel) -> InputAsk:
        async def ask(upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
            relayed = await self.decide(operation, upstream, requests, channel)
            try:
                answers = await channel.ask(upstream, requests)
            except ClientInputRefused as refused:
                self.record_answers(operation, relayed, requests, {}, refused)
                raise
            self.record_answers(operation, relayed, requests, answers, None)
            return answers

        return ask

    async def decide(
        self,
        operation: Operation,
        upstream: str,
        requests: dict[str, InputRequest],
        channel: ClientChannel,
    ) -> dict[str, str]:
        """Steps 1-3 for a round of requests: each decided and its decision durable;
        their relay ids by key. Raises `ClientInputRefused` at the first refused one
        (those after it are not decided: the round is not asked). For a client whose
        answers come with a later request of its own (an upstream task's
        ``inputRequests`` at 2026-07-28), `record_answers` follows when they do."""
        return {
            key: await self._decide(operation, upstream, key, request, channel)
            for key, request in requests.items()
        }

    def record_answers(
        self,
        operation: Operation,
        relayed: dict[str, str],
        requests: dict[str, InputRequest],
        answers: dict[str, Any],
        error: ClientInputRefused | None,
    ) -> None:
        """Step 4: what the client answered to each decided request (by hash), or the
        error it answered with."""
        for key, relay_id in relayed.items():
            answer = None if error is not None else answers.get(key)
            self._answered(operation, relay_id, requests[key], answer, error)

    async def _decide(
        self,
        operation: Operation,
        upstream: str,
        key: str,
        request: InputRequest,
        channel: ClientChannel,
    ) -> str:
        """Decides and records one request; returns its relay id, or raises
        `ClientInputRefused`."""
        relay_id = "rly_" + secrets.token_urlsafe(12)
        policy_input = build_input(
            principal=operation.principal,
            action=request.method,
            request_id=operation.request_id,
            transport=operation.transport,
            resource=policy_resource(operation, upstream, request),
            arguments=request.params,
            client=operation.client,
            run_id=operation.run_id,
            step_id=operation.step_id,
        )
        decision: Decision
        refusal: str | None = None
        unreachable = channel.unreachable()
        if unreachable is not None:
            refusal = f"the upstream's {request.method} request is refused: {unreachable}"
            decision = deny(refusal, engine=GATEWAY_ENGINE, revision=self._decider.revision)
        elif not channel.declared(request):
            refusal = (
                f"the client did not declare the capability {capability(request)}, so the "
                f"upstream's {request.method} request is refused without asking it"
            )
            decision = deny(refusal, engine=GATEWAY_ENGINE, revision=self._decider.revision)
        else:
            try:
                decision = await self._decider.decide(policy_input)
            except PolicyUnavailable as overloaded:
                decision = replace(
                    deny(
                        overloaded.message,
                        engine=self._decider.engine.name,
                        revision=self._decider.revision,
                    ),
                    rule=UNAVAILABLE_RULE,
                )
                refusal = "the gateway could not decide in time (policy engine overloaded)"
            if refusal is None and not decision.permits_now:
                reasons = "; ".join(decision.reasons) or "denied by policy"
                refusal = f"the gateway's policy refused the upstream's {request.method}: {reasons}"
        payload = {
            "relay_id": relay_id,
            "request_id": operation.request_id,
            "principal": operation.principal.to_audit(),
            "method": request.method,
            "upstream": upstream,
            "key": key,
            "request_sha256": sha256_hex(request.params),
            "decision": decision.to_dict(),
            # The request's params are the policy input's arguments: recorded as policy
            # said (redact), withheld without a policy decision (gateway.recording).
            "input": recordable(policy_input, decision),
        }
        try:
            await self._audit.append(
                AuditRecord("relay.decision", relay_id, payload, operation.principal.sub, upstream)
            )
        except AuditUnavailable as exc:
            raise ClientInputRefused(
                f"the upstream's {request.method} was not relayed: the audit log is "
                f"unavailable ({exc.message})"
            ) from None
        if refusal is not None:
            raise ClientInputRefused(refusal)
        return relay_id

    def _answered(
        self,
        operation: Operation,
        relay_id: str,
        request: InputRequest,
        answer: dict[str, Any] | None,
        error: ClientInputRefused | None,
    ) -> None:
        payload: dict[str, Any] = {
            "relay_id": relay_id,
            "request_id": operation.request_id,
            "method": request.method,
            "status": "error" if error is not None else ("answered" if answer else "unanswered"),
            "answer_sha256": sha256_hex(answer) if answer is not None else None,
        }
        if answer is not None and request.method == "elicitation/create":
            payload["action"] = answer.get("action")  # accept, decline or cancel
        if error is not None:
            payload["error"] = error.to_dict()
        try:
            self._audit.submit(
                AuditRecord("relay.answer", relay_id, payload, operation.principal.sub)
            )
        except AuditUnavailable as exc:
            log.error("answer of relay %s not recorded: %s", relay_id, exc.message)


def policy_resource(operation: Operation, upstream: str, request: InputRequest) -> dict[str, Any]:
    """What policy sees of a relayed request (docs/mcp.md, "Policy actions")."""
    resource: dict[str, Any] = {
        "upstream": upstream,
        "server": upstream,
        "for_method": operation.method,
        "for_target": operation.target,
    }
    if request.method == "elicitation/create":
        mode = request.params.get("mode", "form")
        resource["mode"] = mode
        if mode == "url":
            url = request.params.get("url")
            resource["url"] = url
            resource["url_host"] = _host(url)
    return resource


def capability(request: InputRequest) -> str:
    """The client capability ``request`` needs, as MCP names it."""
    if request.method == "elicitation/create":
        return f"elicitation.{request.params.get('mode', 'form')}"
    return "sampling" if request.method == "sampling/createMessage" else "roots"


def _host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None
