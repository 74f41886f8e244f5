"""Resource subscriptions at one upstream MCP server, on behalf of the gateway's clients.

On the shared connection a URI is subscribed once, however many clients subscribed to
it (a count per URI), and unsubscribed when the last of them ends; a sessionless
(2026-07-28) upstream is not subscribed at all but watched (`mcp_changes`). A new
upstream session after a reconnect is subscribed again to every URI still wanted.

A caller with an upstream session of its own (`mcp_caller_sessions`: a calling
session, docs/decisions/0034, or a sessionless request's principal, 0043) subscribes
there, and its updates reach that caller alone (`McpConnection`); such a subscription
ends with the calling session or listen stream, or when it unsubscribes (a principal's
listen streams may hold the same URI: it is unsubscribed when the last one ends).
When its upstream session broke, the next one opened for it is subscribed again,
before its first request, to every URI it still holds.
"""

from __future__ import annotations

import logging

import mcp_types as types

from gateway.errors import UpstreamError, UpstreamRejected
from gateway.operations import CallerSession
from gateway.upstreams.mcp_connection import McpConnection, Route
from gateway.upstreams.mcp_lean_call import is_sessionless

log = logging.getLogger(__name__)


class Subscriptions:
    def __init__(self, connection: McpConnection) -> None:
        self._connection = connection
        self.name = connection.name
        # Subscribers per upstream resource URI (the upstream is subscribed once).
        self._subscribed: dict[str, int] = {}
        # (caller, upstream URI) subscribed on that caller's own upstream session, with
        # how many of its subscriptions hold it.
        self._made_own: dict[tuple[str, str], int] = {}

    async def again(self, route: Route) -> None:
        """A new upstream session: subscribe it again to what is still wanted on it —
        after a reconnect of the shared connection, every URI subscribed there; for a
        calling session's own, the URIs that session still holds (its last one broke)."""
        if route.own is not None:
            own = route.own
            wanted = sorted(uri for sid, uri in self._made_own if sid == own.session_id)
        elif is_sessionless(route.client.protocol_version):
            return
        else:
            own, wanted = None, list(self._subscribed)
        for uri in wanted:
            try:
                await self._subscribe_upstream(route, uri, {}, self._connection.config.timeout_s)
            except UpstreamError as exc:
                log.warning("upstream %s: %s not subscribed again: %s", self.name, uri, exc)
                continue
            if own is not None:
                own.subscribed.add(uri)

    async def subscribe(
        self,
        uri: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        session: CallerSession | None = None,
    ) -> None:
        route = await self._connection.route(session)
        client = route.client
        capabilities = client.server_capabilities.resources
        if capabilities is None or not capabilities.subscribe:
            raise UpstreamRejected(
                f"upstream {self.name} does not offer resource subscriptions",
                rpc_code=types.METHOD_NOT_FOUND,
                rpc_message=f"upstream {self.name} does not offer resource subscriptions",
            )
        if route.own is not None:  # the calling session's own upstream session
            if uri not in route.own.subscribed:
                await self._subscribe_upstream(route, uri, headers, timeout_s)
                route.own.subscribed.add(uri)
            held = (route.own.session_id, uri)
            self._made_own[held] = self._made_own.get(held, 0) + 1
            return
        count = self._subscribed.get(uri, 0)
        self._subscribed[uri] = count + 1
        sessionless = is_sessionless(client.protocol_version)
        if count and not sessionless:
            return  # already subscribed for another client
        changes = self._connection.changes
        try:
            if sessionless:
                # Made once the upstream's listen stream carries it (for another
                # client's subscription too, which may still be on its way), so no
                # update after the client was told "subscribed" is missed.
                await changes.honoured(changes.watch(frozenset(self._subscribed)), timeout_s)
            else:
                await self._subscribe_upstream(route, uri, headers, timeout_s)
                changes.watch(frozenset(self._subscribed))
        except BaseException:
            await self.unsubscribe(uri)
            raise

    async def unsubscribe(self, uri: str, *, session: CallerSession | None = None) -> None:
        if session is not None and (session.id, uri) in self._made_own:
            # Made on the caller's own upstream session (which may be closed).
            held = (session.id, uri)
            if self._made_own[held] > 1:
                self._made_own[held] -= 1  # another of its subscriptions holds it
                return
            del self._made_own[held]
            own = self._connection.callers.existing(session.id)
            if own is not None and own.client is not None and uri in own.subscribed:
                own.subscribed.discard(uri)
                await self._unsubscribe_upstream(
                    Route(own.client, own.in_flight, own.mark_broken, own), uri
                )
            return
        count = self._subscribed.get(uri, 0)
        if count > 1:
            self._subscribed[uri] = count - 1
            return
        self._subscribed.pop(uri, None)
        self._connection.changes.watch(frozenset(self._subscribed))
        client = self._connection.client
        if client is None or is_sessionless(client.protocol_version):
            return
        await self._unsubscribe_upstream(self._connection.shared(client), uri)

    async def _subscribe_upstream(
        self, route: Route, uri: str, headers: dict[str, str], timeout_s: float
    ) -> None:
        await self._connection.request(
            f"a subscription to {uri}",
            lambda: route.client.session.send_request(
                types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)),
                types.EmptyResult,
            ),
            headers=headers,
            log=None,
            timeout_s=timeout_s,
            route=route,
        )

    async def _unsubscribe_upstream(self, route: Route, uri: str) -> None:
        try:
            await self._connection.request(
                f"the end of a subscription to {uri}",
                lambda: route.client.session.send_request(
                    types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri)),
                    types.EmptyResult,
                ),
                headers={},
                log=None,
                timeout_s=self._connection.config.timeout_s,
                route=route,
            )
        except UpstreamError as exc:  # it sends an update too many, which nobody gets
            log.info("upstream %s: %s not unsubscribed: %s", self.name, uri, exc.message)
