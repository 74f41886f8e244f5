"""How an upstream's requests for client input reach the MCP client that made the
request, in each era (docs/mcp.md, "Requests for client input"; docs/decisions/0019).

`gateway.relays` decides and records each request; this module is the way back to
the client, the `ClientChannel` (what it declared: `mcp_relay_capabilities`):

- **2025-11-25, in a session**: a server-to-client request on the call's own stream
  (``related_request_id``), through the SDK's session; what the client answers goes
  back to the upstream.
- **2025-11-25 without a session**: there is no way back; every request is refused.
- **2026-07-28**: the request cannot be asked while the call runs; the gateway ends
  the client's request with an ``input_required`` result holding the upstream's
  requests and a `requestState` the gateway sealed (`mcp_relay_state`), and keeps the
  operation waiting in this process for the client's retry. The retry — same method,
  name and arguments, with ``inputResponses`` and that state — is checked (seal,
  binding, expiry, single use), and the waiting operation resumes with the answers:
  the upstream gets them as a 2025-11-25 server-to-client answer or as its own next
  round. A client that declared none of elicitation, sampling and roots never makes
  the gateway wait: its calls run as before, and any request is refused.

Waiting operations live in the process that started them, like sessions: a retry
must reach the same replica (docs/decisions/0019). One that does not, or comes back
after `StateSeal.ttl_s`, is refused; the upstream's request then fails with a clear
error, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from starlette.requests import Request

from gateway.audit import AuditLog, AuditRecord
from gateway.canonical import arguments_hash
from gateway.errors import AuditUnavailable, ClientInputRefused, RelayStateRefused
from gateway.operations import ClientInput, InputRequest, Operation
from gateway.relays import ClientChannel, Relays
from gateway.surfaces.auth import principal_of
from gateway.surfaces.mcp_relay_capabilities import (
    capabilities_of,
    declares,
    declares_any,
    relayable,
)
from gateway.surfaces.mcp_relay_state import StateSeal, UsedStates
from gateway.surfaces.mcp_views import View
from gateway.surfaces.middleware import request_id_of
from gateway.types import Principal

log = logging.getLogger(__name__)

_R = TypeVar("_R")
Prepare = Callable[[Operation], Operation]

_REQUEST_TYPES: dict[str, type[types.Request[Any, Any]]] = {
    "elicitation/create": types.ElicitRequest,
    "sampling/createMessage": types.CreateMessageRequest,
    "roots/list": types.ListRootsRequest,
}
_RESULT_TYPES: dict[str, type[types.Result]] = {
    "elicitation/create": types.ElicitResult,
    "sampling/createMessage": types.CreateMessageResult,
    "roots/list": types.ListRootsResult,
}


@dataclass(frozen=True)
class Asking:
    """A client request that may lead to requests for client input, as the relay needs
    it: who, where, what, and how to reach the client."""

    principal: Principal
    endpoint: str  # the request's path: /mcp or /mcp/{upstream}
    method: str
    target: str  # the gateway's name of what is called, read or got
    arguments: dict[str, Any]
    modern: bool  # 2026-07-28
    capabilities: types.ClientCapabilities | None
    request_id: str  # the gateway's request id (audit ref)
    session: ServerSession | None = None  # 2025-11-25, in a session
    related_request_id: types.RequestId | None = None
    request_state: str | None = None
    input_responses: dict[str, Any] | None = None


class _SessionChannel:
    """2025-11-25 in a session: requests on the call's stream."""

    def __init__(self, asking: Asking, timeout_s: float) -> None:
        assert asking.session is not None
        self._session = asking.session
        self._capabilities = asking.capabilities
        self._related = asking.related_request_id
        self._timeout_s = timeout_s

    def declared(self, request: InputRequest) -> bool:
        return declares(self._capabilities, request)

    def capabilities(self) -> dict[str, Any]:
        return relayable(self._capabilities)

    def unreachable(self) -> str | None:
        return None

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for key, request in requests.items():
            typed = _REQUEST_TYPES[request.method].model_validate(
                {"method": request.method, "params": request.params or None}, by_name=False
            )
            result_type = _RESULT_TYPES[request.method]
            if request.method == "sampling/createMessage" and request.params.get("tools"):
                result_type = types.CreateMessageResultWithTools  # content may be a list
            try:
                result = await self._session.send_request(
                    typed,  # type: ignore[arg-type]
                    result_type,
                    request_read_timeout_seconds=self._timeout_s,
                    metadata=ServerMessageMetadata(related_request_id=self._related),
                )
            except MCPError as exc:  # the client's own refusal, passed on as it is
                raise ClientInputRefused(
                    f"the client answered {request.method} with an error: {exc.message}",
                    rpc_code=exc.code,
                ) from None
            except Exception as exc:
                raise ClientInputRefused(
                    f"the client could not be asked {request.method}: {type(exc).__name__}"
                ) from None
            answers[key] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return answers


class _Unreachable:
    """No way back to the client, or nothing it could be asked."""

    def __init__(self, reason: str | None = None) -> None:
        self._reason = reason

    def declared(self, request: InputRequest) -> bool:
        return False

    def capabilities(self) -> dict[str, Any]:
        return {}

    def unreachable(self) -> str | None:
        return self._reason

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        raise ClientInputRefused("the client cannot be asked")  # never reached: not declared


@dataclass
class _Conversation:
    """A 2026-07-28 operation running in the background while its client is asked."""

    capabilities: types.ClientCapabilities | None
    events: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    reply: asyncio.Future[dict[str, Any]] | None = None


class _ParkingChannel:
    """2026-07-28: each round of requests ends the client's request with an
    ``input_required`` result; the answers arrive with its retry."""

    def __init__(self, relay: InputRelay, conversation: _Conversation) -> None:
        self._relay = relay
        self._conversation = conversation

    def declared(self, request: InputRequest) -> bool:
        return declares(self._conversation.capabilities, request)

    def capabilities(self) -> dict[str, Any]:
        return relayable(self._conversation.capabilities)

    def unreachable(self) -> str | None:
        return None

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self._conversation.events.put(("ask", upstream, requests, reply))
        try:
            with anyio.fail_after(self._relay.seal.ttl_s):
                return await reply
        except TimeoutError:
            raise ClientInputRefused(
                f"the client did not come back with its answers within {self._relay.seal.ttl_s:g} s"
            ) from None


class InputRelay:
    """Runs client requests that may need client input, in either era."""

    def __init__(
        self,
        relays: Relays,
        seal: StateSeal,
        used: UsedStates,
        audit: AuditLog,
        *,
        timeout_s: float,
        max_waiting: int = 1000,
    ) -> None:
        self.relays = relays
        self.seal = seal
        self._used = used
        self._audit = audit
        self._timeout_s = timeout_s
        self._max_waiting = max_waiting
        self._waiting: dict[str, _Conversation] = {}
        self._running: set[asyncio.Task[Any]] = set()

    async def run(
        self, asking: Asking, run: Callable[[Prepare], Awaitable[_R]]
    ) -> _R | types.InputRequiredResult:
        """``run`` (which builds the operation through the given `Prepare`) with its
        upstream's requests for client input relayed; at 2026-07-28 possibly an
        ``input_required`` result instead, or the continuation of a waiting one."""
        # Answers without a state answer nothing: ignored, as unexpected params are.
        if asking.request_state is not None:
            if not asking.modern:
                raise MCPError(
                    code=types.INVALID_PARAMS,
                    message="requestState and inputResponses are for 2026-07-28 requests",
                )
            return await self._resume(asking)
        channel: ClientChannel
        if not asking.modern:
            if asking.session is None:
                channel = _Unreachable(
                    "a 2025-11-25 client can be asked only in a session (Mcp-Session-Id)"
                )
            else:
                channel = _SessionChannel(asking, self._timeout_s)
            return await run(self._prepare(channel))
        if not declares_any(asking.capabilities):
            # Nothing it could be asked: no background task, as before.
            return await run(self._prepare(_Unreachable()))
        if len(self._waiting) >= self._max_waiting:
            busy = _Unreachable(
                f"{self._max_waiting} requests already wait for their clients' answers here"
            )
            return await run(self._prepare(busy))
        conversation = _Conversation(asking.capabilities)
        prepare = self._prepare(_ParkingChannel(self, conversation))
        task = asyncio.create_task(run(prepare))
        self._running.add(task)

        def finished(done: asyncio.Task[Any]) -> None:
            self._running.discard(done)
            conversation.events.put_nowait(("done", done))

        task.add_done_callback(finished)
        return await self._next(asking, conversation)

    def standalone(self, asking: Asking, operation: Operation) -> ClientInput:
        """How an upstream session of ``asking``'s calling session (2025-11-25) asks that
        client outside any of its requests: on the session's standalone stream, each
        request decided by policy and audited as any other (``operation`` says what
        the client did that led to it)."""
        channel = _SessionChannel(asking, self._timeout_s)
        client_input = self.relays.with_channel(operation, channel).client_input
        assert client_input is not None
        return client_input

    def for_task(self, asking: Asking, operation: Operation) -> ClientInput:
        """How the owner of an upstream's task is asked what the task waits for, while
        its 2025-11-25 ``tasks/result`` is in flight: on that request's stream in a
        session, else not at all (each request refused, audited). ``operation`` is the
        task's call: its requests are decided and recorded under its request id."""
        channel: ClientChannel
        if asking.session is None:
            channel = _Unreachable(
                "a 2025-11-25 client can be asked only in a session (Mcp-Session-Id)"
            )
        else:
            channel = _SessionChannel(asking, self._timeout_s)
        client_input = self.relays.with_channel(operation, channel).client_input
        assert client_input is not None
        return client_input

    @property
    def timeout_s(self) -> float:
        """How long a client is waited for with its answers (``mcp.input.timeout_s``)."""
        return self._timeout_s

    def _prepare(self, channel: ClientChannel) -> Prepare:
        return lambda operation: self.relays.with_channel(operation, channel)

    async def _next(self, asking: Asking, conversation: _Conversation) -> Any:
        event = await conversation.events.get()
        if event[0] == "done":
            return event[1].result()
        _, upstream, requests, reply = event
        continuation = secrets.token_urlsafe(16)
        conversation.reply = reply
        self._waiting[continuation] = conversation
        reply.add_done_callback(lambda _: self._waiting.pop(continuation, None))
        claims = self.seal.new_claims(
            identity=asking.principal.identity,
            endpoint=asking.endpoint,
            method=asking.method,
            target=asking.target,
            arguments_sha256=arguments_hash(asking.arguments),
            upstream=upstream,
            continuation=continuation,
            keys=tuple(requests),
        )
        wire = {
            key: {"method": request.method, "params": request.params}
            for key, request in requests.items()
        }
        return types.InputRequiredResult.model_validate(
            {"inputRequests": wire, "requestState": self.seal.seal(claims)}, by_name=False
        )

    async def _resume(self, asking: Asking) -> Any:
        try:
            assert asking.request_state is not None
            claims = self.seal.open(
                asking.request_state,
                identity=asking.principal.identity,
                endpoint=asking.endpoint,
                method=asking.method,
                target=asking.target,
                arguments_sha256=arguments_hash(asking.arguments),
            )
            await anyio.to_thread.run_sync(self._used.use, claims)
            conversation = self._waiting.pop(claims.continuation, None)
            if conversation is None or conversation.reply is None or conversation.reply.done():
                raise RelayStateRefused(
                    "no request waits for these answers here: it timed out, or was started "
                    "on another gateway replica; send the request again without requestState",
                    reason="unknown",
                )
        except RelayStateRefused as refused:
            await self._record_refusal(asking, refused)
            raise MCPError(
                code=refused.jsonrpc_code,
                message=f"Invalid requestState: {refused.message}",
                data={"reason": refused.reason, "request_id": asking.request_id},
            ) from None
        answers = {
            key: _dump(value)
            for key, value in (asking.input_responses or {}).items()
            if key in claims.keys
        }
        conversation.reply.set_result(answers)
        return await self._next(asking, conversation)

    async def _record_refusal(self, asking: Asking, refused: RelayStateRefused) -> None:
        payload = {
            "request_id": asking.request_id,
            "principal": asking.principal.to_audit(),
            "method": asking.method,
            "target": asking.target,
            "reason": refused.reason,
            "message": refused.message,
        }
        try:
            await self._audit.append(
                AuditRecord(
                    "relay.state_refused",
                    asking.request_id,
                    payload,
                    asking.principal.sub,
                    asking.target,
                )
            )
        except AuditUnavailable as exc:
            log.error("refused requestState of %s not recorded: %s", asking.request_id, exc)


def direct_asking(request: Request, params: types.CallToolRequestParams) -> Asking:
    """`Asking` of a 2026-07-28 ``tools/call`` the direct path answers (no SDK context)."""
    return Asking(
        principal=principal_of(request),
        endpoint=request.url.path,
        method="tools/call",
        target=View.of(request).name_in(params.name),
        arguments=dict(params.arguments or {}),
        modern=True,
        capabilities=capabilities_of(params.meta),
        request_id=request_id_of(request),
        request_state=params.request_state,
        input_responses=params.input_responses,
    )


def _dump(value: Any) -> dict[str, Any]:
    if hasattr(value, "model_dump"):
        dumped: dict[str, Any] = value.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped
    return value if isinstance(value, dict) else {}
