"""What an upstream's own task waits for (``input_required``), relayed to the client
that owns it (docs/decisions/0041; docs/mcp.md, "Tasks").

Every request is decided and recorded by the one relay (`gateway.relays`: the
capability, policy with the request's method as the action, ``relay.decision``
durable before the client is asked, ``relay.answer`` by hash), under the request id of
the task's call. How the owner is asked depends on its era:

- **2025-11-25**: on the stream of its ``tasks/result`` (`InputRelay.for_task`): a
  2025-11-25 upstream sends its requests there itself (`UpstreamTasks.get`); those of
  a 2026-07-28 upstream's ``inputRequests`` are asked there by `ask_now`, and the
  answers sent with ``tasks/update``.
- **2026-07-28**: the upstream's ``inputRequests`` are decided when its ``tasks/get``
  first shows them (`offer`) and shown to the owner in the gateway's ``tasks/get``;
  its ``tasks/update`` brings the answers (`answers`), recorded and passed on.

A refused request is never put to the client. A 2025-11-25 upstream gets the refusal
as the JSON-RPC error answering its request; a 2026-07-28 upstream has no such answer
(``tasks/update`` carries results only), so its task is cancelled and the gateway's
task fails, saying why (`refusal`). What was offered and refused lives in this
process (like a waiting 2026-07-28 request, docs/decisions/0019), bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext

from gateway.canonical import sha256_hex
from gateway.errors import ClientInputRefused
from gateway.operations import INPUT_METHODS, ClientInput, InputRequest, Operation
from gateway.relays import Relays
from gateway.surfaces.mcp_context import http_request
from gateway.surfaces.mcp_relay import Asking, InputRelay
from gateway.surfaces.mcp_relay_capabilities import declares, relayable
from gateway.surfaces.mcp_task_store import TaskRow
from gateway.types import Principal
from gateway.upstreams import mcp_client_input

RELATED_TASK_META = "io.modelcontextprotocol/related-task"
# Tasks whose offered requests (or refusal) one process remembers at once.
MAX_REMEMBERED = 1000


class PolledChannel:
    """A 2026-07-28 owner polling its task: what it declared on that request decides
    what may be put to it; it is asked by the task's state, never directly."""

    def __init__(self, capabilities: types.ClientCapabilities | None) -> None:
        self._capabilities = capabilities

    def declared(self, request: InputRequest) -> bool:
        return declares(self._capabilities, request)

    def capabilities(self) -> dict[str, Any]:
        return relayable(self._capabilities)

    def unreachable(self) -> str | None:
        return None

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        raise ClientInputRefused("the client is asked through its task's state")  # never used


@dataclass(frozen=True)
class Offered:
    """A round of an upstream task's requests, decided, shown to its owner."""

    digest: str  # of the upstream's inputRequests, to know a new round from a re-read
    requests: dict[str, InputRequest]
    relayed: dict[str, str]  # relay ids by key
    wire: dict[str, Any]


def requests_of(input_requests: dict[str, Any], task_id: str) -> dict[str, InputRequest]:
    """An upstream's ``inputRequests`` as the relay reads them, for the gateway's task
    ``task_id``; a request of a method the gateway does not relay is refused."""
    requests: dict[str, InputRequest] = {}
    for key, raw in input_requests.items():
        method = raw.get("method") if isinstance(raw, dict) else None
        params = raw.get("params") if isinstance(raw, dict) else None
        if method not in INPUT_METHODS:
            raise ClientInputRefused(
                f"the upstream asked for input the gateway does not relay: {method!r}"
            )
        request = InputRequest(method, params if isinstance(params, dict) else {})
        requests[str(key)] = related(request, task_id)
    return requests


def related(request: InputRequest, task_id: str) -> InputRequest:
    """``request`` naming the gateway's task it is for (``_meta`` related-task), never
    the upstream's own task id, which does not leave the gateway (docs/decisions/0030)."""
    meta = request.params.get("_meta")
    meta = {**meta} if isinstance(meta, dict) else {}
    meta[RELATED_TASK_META] = {"taskId": task_id}
    return InputRequest(request.method, {**request.params, "_meta": meta})


def for_task(client_input: ClientInput, task_id: str) -> ClientInput:
    """``client_input`` whose requests name the gateway's task ``task_id`` (a
    2025-11-25 upstream tags those it sends on a ``tasks/result`` stream with its own)."""

    async def ask(upstream: str, requests: dict[str, InputRequest]) -> dict[str, Any]:
        mapped = {key: related(request, task_id) for key, request in requests.items()}
        return await client_input.ask(upstream, mapped)

    return replace(client_input, ask=ask)


class TaskInput:
    def __init__(self, relays: Relays) -> None:
        self.relays = relays
        self._offered: OrderedDict[str, Offered] = OrderedDict()
        self._refused: OrderedDict[str, str] = OrderedDict()

    async def ask_now(
        self,
        task_id: str,
        upstream: str,
        input_requests: dict[str, Any],
        client_input: ClientInput,
    ) -> dict[str, Any]:
        """A 2025-11-25 owner asked, on its ``tasks/result`` stream, what a 2026-07-28
        upstream's task waits for: the answers, checked, in wire form for
        ``tasks/update``. Raises `ClientInputRefused`."""
        requests = requests_of(input_requests, task_id)
        answers = await client_input.ask(upstream, requests)
        return wire_answers(mcp_client_input.typed_answers(requests, answers))

    async def offer(
        self,
        task_id: str,
        operation: Operation,
        upstream: str,
        input_requests: dict[str, Any],
        channel: PolledChannel,
    ) -> dict[str, Any]:
        """The requests a 2026-07-28 owner is shown, each decided (once per round:
        polls of the same round are not decided again). Raises `ClientInputRefused`."""
        digest = sha256_hex(input_requests)
        offered = self._offered.get(task_id)
        if offered is not None and offered.digest == digest:
            return offered.wire
        requests = requests_of(input_requests, task_id)
        relayed = await self.relays.decide(operation, upstream, requests, channel)
        wire = {
            key: {"method": request.method, "params": request.params}
            for key, request in requests.items()
        }
        _remember(self._offered, task_id, Offered(digest, requests, relayed, wire))
        return wire

    def answers(
        self, task_id: str, operation: Operation, responses: dict[str, Any]
    ) -> dict[str, Any]:
        """A 2026-07-28 owner's ``tasks/update``: its answers to what it was shown,
        recorded and checked, in wire form (keys it was not asked are dropped). Raises
        `ClientInputRefused` when nothing of this task waits for answers here."""
        offered = self._offered.pop(task_id, None)
        if offered is None:
            raise ClientInputRefused(
                f"task {task_id} waits for no input the gateway showed here (it asked none, "
                "was answered already, or its tasks/get was served by another replica): "
                "read it with tasks/get first",
                rpc_code=types.INVALID_PARAMS,
            )
        given = {key: value for key, value in responses.items() if key in offered.requests}
        try:
            typed = mcp_client_input.typed_answers(offered.requests, given)
        except ClientInputRefused as refused:
            self.relays.record_answers(operation, offered.relayed, offered.requests, {}, refused)
            raise
        wire = wire_answers(typed)
        self.relays.record_answers(operation, offered.relayed, offered.requests, wire, None)
        return wire

    def refuse(self, task_id: str, reason: str) -> None:
        """The task's upstream was told no (its task cancelled): say why from now on."""
        self._offered.pop(task_id, None)
        _remember(self._refused, task_id, reason)

    def refusal(self, task_id: str) -> str | None:
        return self._refused.get(task_id)


def wire_answers(typed: dict[str, Any]) -> dict[str, Any]:
    """Checked answers (`mcp_client_input.typed_answers`) as they are sent and recorded."""
    return {
        key: value.model_dump(by_alias=True, mode="json", exclude_none=True)
        for key, value in typed.items()
    }


def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > MAX_REMEMBERED:
        store.popitem(last=False)


def owner_input(
    relay: InputRelay,
    ctx: ServerRequestContext[Any, Any],
    row: TaskRow,
    principal: Principal,
    in_session: bool,
) -> ClientInput:
    """How a 2025-11-25 owner's ``tasks/result`` (``ctx``) is asked what its upstream
    task waits for: on that request's stream in a session, else refused (audited)."""
    asking = Asking(
        principal=principal,
        endpoint=http_request(ctx).url.path,
        method="tasks/result",
        target=row.tool,
        arguments={},
        modern=False,
        capabilities=ctx.session.client_capabilities,
        request_id=row.request_id,
        session=ctx.session if in_session else None,
        related_request_id=ctx.request_id,
    )
    call = Operation(principal, "tools/call", row.tool, {}, "mcp", row.request_id)
    return for_task(relay.for_task(asking, call), row.id)
