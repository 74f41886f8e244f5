"""Which upstream session a sessionless 2026-07-28 request reaches a 2025-11-25
upstream on: the one held for its principal (docs/decisions/0043).

A 2026-07-28 client has no session at the gateway, and an upstream of the 2025-11-25
era keeps state per session (roots asked once and kept, logging and updates a tool
switches on "for this client", subscriptions). On the gateway's shared connection that
state would be every caller's, so such a request goes on an upstream session held for
the finest identity the gateway has of its caller (`mcp_caller_sessions` opens it at
the first request, and closes it once idle): the caller's identity and delegation
chain (who policy sees), the endpoint (as a session is bound to one, 0018), and which
of elicitation, sampling and roots the request declared (what that upstream session's
handshake declares; a request declaring others gets another). Two clients acting as
one principal on one endpoint with the same capabilities share it, and with it that
upstream's state: the roots the first answered, what a tool switched on.

What that upstream asks while none of the principal's requests is in flight there (a
timer's request, a ``roots/list`` after a change) has nobody to ask: it is refused
under the relay's one rule (`gateway.relays`: decided by the gateway, recorded as a
``relay.decision``), attributed to the principal's latest request there.
"""

from __future__ import annotations

import mcp_types as types

from gateway.operations import CallerSession, ClientInput, InputRequest, Operation
from gateway.relays import Relays
from gateway.types import Principal

# What the upstream session of a principal declares, and so what tells two apart.
_RELAYED = ("elicitation", "roots", "sampling")

NOT_IN_FLIGHT = (
    "it arrived while no request of this caller was in flight on the upstream session "
    "held for it (a sessionless client can be asked only while its request runs)"
)


class _NotInFlight:
    """The relay's `ClientChannel` for what nobody can be asked: every request refused
    by the gateway, with the reason recorded."""

    def declared(self, request: InputRequest) -> bool:
        return False

    def capabilities(self) -> dict[str, dict[str, object]]:
        return {}

    def unreachable(self) -> str | None:
        return NOT_IN_FLIGHT

    async def ask(self, upstream: str, requests: dict[str, InputRequest]) -> dict[str, object]:
        raise AssertionError("never asked: the relay refuses first")  # pragma: no cover


class PrincipalCallers:
    """Builds the `CallerSession` of a sessionless request (cheap: nothing is opened
    until a 2025-11-25 upstream is reached, `McpConnection.route`)."""

    def __init__(self, relays: Relays) -> None:
        self._relays = relays

    def caller(
        self,
        principal: Principal,
        endpoint: str,
        capabilities: types.ClientCapabilities | None,
        *,
        method: str,
        target: str,
        request_id: str,
    ) -> CallerSession:
        declared = tuple(name for name in _RELAYED if getattr(capabilities, name, None) is not None)
        # The token's issuer and subject as written, and its actors (each its subject
        # and issuer): never coarser than the identity (two spellings of one subject
        # only cost a second upstream session). A repr: no subject or path can make two
        # callers' keys equal.
        who = (principal.iss, principal.sub, principal.act_chain, endpoint, declared)
        key = "principal:" + repr(who)
        return CallerSession(
            key,
            {name: {} for name in declared},
            for_principal=True,
            outside=lambda: self._outside(principal, method, target, request_id),
        )

    def _outside(
        self, principal: Principal, method: str, target: str, request_id: str
    ) -> ClientInput:
        """Refuses, under the relay's rule, what the upstream asks outside the
        principal's requests; ``method``, ``target`` and ``request_id`` are the
        request's that last reached the upstream session (what policy and the audit
        log see it attributed to). Built when asked: most never are."""

        def refusing() -> ClientInput:
            operation = Operation(
                principal=principal,
                method=method,  # type: ignore[arg-type]  # the request's own method
                target=target,
                arguments={},
                transport="mcp",
                request_id=request_id,
            )
            client_input = self._relays.with_channel(operation, _NotInFlight()).client_input
            assert client_input is not None
            return client_input

        async def ask(upstream: str, requests: dict[str, InputRequest]) -> dict[str, object]:
            return await refusing().ask(upstream, requests)

        async def check(upstream: str, request: InputRequest) -> None:
            await refusing().check(upstream, request)

        return ClientInput(ask, {}, check)  # type: ignore[arg-type]
