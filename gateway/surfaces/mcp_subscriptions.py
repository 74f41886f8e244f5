"""Resource subscriptions and list changes for MCP clients (docs/mcp.md,
"Subscriptions"): 2025-11-25 ``resources/subscribe`` / ``resources/unsubscribe`` in a
session, and 2026-07-28 ``subscriptions/listen``.

A subscription to a URI is an `Operation` of the one pipeline (``resources/subscribe``,
decided like a read of the URI and audited like one): only an allowed one subscribes
the upstream (`SubscribeTarget`: one upstream subscription per upstream URI, however
many clients ask). Updates the upstream sends reach every subscriber of that URI, in
the URI it asked with (its endpoint's names): a 2025-11-25 session as
``notifications/resources/updated`` on its standalone stream, a 2026-07-28 listen
stream as a frame of that stream. A listen stream also carries the list changes it
asked for (``Catalog.on_change``, after the catalog re-read that upstream's lists), of
the upstreams its endpoint serves.

A 2025-11-25 session reaching an upstream of that era subscribes on its own upstream
session (docs/decisions/0034), and a 2026-07-28 listen stream on the one held for its
principal (docs/decisions/0043: where that principal's tool calls switch the
upstream's updates on); such an upstream session's updates reach its own subscribers
alone. Updates on the shared connection reach every subscriber of the URI.

Subscriptions end with their session (2025-11-25) or stream (2026-07-28), or when
the policy, decided again at the first update after it changed, now refuses them
(`Pipeline.redecide`); the last subscriber of an upstream URI unsubscribes the
upstream. Like sessions, they live in the process that holds the session or stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
    event_to_notification,
)
from mcp_types import (
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)

from gateway import telemetry
from gateway.errors import RetryLater
from gateway.logs import new_request_id
from gateway.operations import CallerSession, Operation
from gateway.pipeline import Pipeline
from gateway.surfaces.auth import client_info
from gateway.surfaces.mcp_calls import caller_of, run
from gateway.surfaces.mcp_context import http_request
from gateway.surfaces.mcp_principals import PrincipalCallers
from gateway.surfaces.mcp_results import refusal
from gateway.surfaces.mcp_sessions import SessionBook
from gateway.surfaces.mcp_views import View
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.tracing import trace_of
from gateway.types import OutcomeStatus

log = logging.getLogger(__name__)

# A listen stream whose client stopped reading is ended at this backlog.
MAX_BUFFERED_EVENTS = 1024

_LIST_EVENTS: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "prompts": PromptsListChanged(),
    "resources": ResourcesListChanged(),
}


@dataclass(eq=False)
class _Subscriber:
    """One client's subscription to one upstream resource, and how to tell it."""

    upstream: str
    upstream_uri: str
    asked_uri: str  # as the client named it (its endpoint's names)
    tell: Callable[[str], Awaitable[None]]
    operation: Operation  # the subscription as decided, to decide again
    revision: str | None  # the policy revision that allowed it
    # Whom it was made for: a 2025-11-25 session, or a listen stream's principal (0043).
    session: CallerSession | None = None
    ended: bool = False


@dataclass(eq=False)
class _Listener:
    """A 2026-07-28 listen stream's wish for list changes."""

    upstream: str | None  # the endpoint's upstream; None: every one (`/mcp`)
    lists: frozenset[str]
    deliver: Callable[[ServerEvent], None]


@dataclass
class _SessionSubscriptions:
    by_uri: dict[str, _Subscriber] = field(default_factory=dict)


class Subscriptions:
    def __init__(self, pipeline: Pipeline, book: SessionBook, principals: PrincipalCallers) -> None:
        self._pipeline = pipeline
        self._book = book
        self._principals = principals
        self._subscribers: dict[tuple[str, str], set[_Subscriber]] = {}
        self._sessions: dict[str, _SessionSubscriptions] = {}
        self._listeners: set[_Listener] = set()
        pipeline.catalog.on_resource_updated(self._updated)
        pipeline.catalog.on_change(self._lists_changed)
        book.on_end(self._session_ended)

    # --- 2025-11-25: resources/subscribe and resources/unsubscribe ---------------------

    async def subscribe(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: types.SubscribeRequestParams,
        session: CallerSession | None,
    ) -> types.EmptyResult:
        if session is None or session.for_principal:
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="resources/subscribe needs a session: initialize first and send "
                "its Mcp-Session-Id (updates arrive on the session's GET stream)",
            )
        asked = str(params.uri)
        mine = self._sessions.setdefault(session.id, _SessionSubscriptions())
        if asked in mine.by_uri:
            return types.EmptyResult()  # already subscribed: nothing more to decide
        sdk_session = ctx.session

        async def tell(uri: str) -> None:
            await sdk_session.send_resource_updated(uri)

        subscriber = await self._subscribe(ctx, asked, tell, session)
        mine.by_uri[asked] = subscriber
        return types.EmptyResult()

    async def unsubscribe(
        self, params: types.UnsubscribeRequestParams, session_id: str | None
    ) -> types.EmptyResult:
        mine = self._sessions.get(session_id or "")
        subscriber = mine.by_uri.pop(str(params.uri), None) if mine is not None else None
        if subscriber is not None:
            await self._release(subscriber)
        return types.EmptyResult()

    async def _session_ended(self, session_id: str) -> None:
        mine = self._sessions.pop(session_id, None)
        for subscriber in mine.by_uri.values() if mine is not None else ():
            await self._release(subscriber)

    # --- 2026-07-28: subscriptions/listen ---------------------------------------------

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """One listen stream: the acknowledgement first (the honored part of the filter:
        a URI policy refuses is left out), then the events asked for, until the client
        goes away."""
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(types.INVALID_REQUEST, "subscriptions/listen requires a request id")
        request = http_request(ctx)
        view = View.of(request)
        wanted = params.notifications
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        send, receive = anyio.create_memory_object_stream[ServerEvent](MAX_BUFFERED_EVENTS)

        def deliver(event: ServerEvent) -> None:
            try:
                send.send_nowait(event)
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                log.info("listen stream %r backlog full or closed; ending it", subscription_id)
                send.close()

        async def tell(uri: str) -> None:
            deliver(ResourceUpdated(uri=uri))

        subscribed: list[_Subscriber] = []
        lists = frozenset(
            name
            for name, flag in (
                ("tools", wanted.tools_list_changed),
                ("prompts", wanted.prompts_list_changed),
                ("resources", wanted.resources_list_changed),
            )
            if flag
        )
        listener = _Listener(view.upstream, lists, deliver)
        try:
            for uri in wanted.resource_subscriptions or ():
                target = view.uri_in(uri)
                principal = self._principals.caller(
                    caller_of(request),
                    request.url.path,
                    ctx.session.client_capabilities,
                    method="resources/subscribe",
                    target=target,
                    request_id=request_id_of(request),
                )
                try:
                    subscribed.append(await self._subscribe(ctx, uri, tell, principal))
                except MCPError as refused:
                    log.info(
                        "listen stream %r: %s not subscribed: %s", subscription_id, uri, refused
                    )
            if lists:
                self._listeners.add(listener)
            honored = SubscriptionFilter(
                tools_list_changed=True if "tools" in lists else None,
                prompts_list_changed=True if "prompts" in lists else None,
                resources_list_changed=True if "resources" in lists else None,
                resource_subscriptions=[s.asked_uri for s in subscribed] or None,
            )
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=honored, _meta=meta
                    )
                ),
                related_request_id=subscription_id,
            )
            async for event in receive:
                await ctx.session.send_notification(
                    event_to_notification(event, meta), related_request_id=subscription_id
                )
        finally:
            self._listeners.discard(listener)
            send.close()
            receive.close()
            with anyio.CancelScope(shield=True):
                for subscriber in subscribed:
                    await self._release(subscriber)
        return SubscriptionsListenResult(_meta=meta)

    # --- shared ---------------------------------------------------------------------------

    async def _subscribe(
        self,
        ctx: ServerRequestContext[Any, Any],
        asked: str,
        tell: Callable[[str], Awaitable[None]],
        session: CallerSession | None = None,
    ) -> _Subscriber:
        """Decides and makes one subscription (the pipeline); raises `MCPError` when it
        is refused, as a read of the URI would be."""
        request = http_request(ctx)
        view = View.of(request)
        operation = Operation(
            principal=caller_of(request),
            method="resources/subscribe",
            target=view.uri_in(asked),
            arguments={},
            transport="mcp",
            request_id=request_id_of(request),
            client=client_info(request),
            trace=trace_of(request, ctx.meta) if telemetry.ON else None,
            session=session,
        )
        outcome = await run(self._pipeline, operation)
        if outcome.status is not OutcomeStatus.OK:
            raise refusal(outcome, asked=asked, is_uri=True)
        target = self._pipeline.catalog.resolve_target("resources/subscribe", operation.target)
        assert hasattr(target, "upstream_uri")
        subscriber = _Subscriber(
            target.config.name,
            target.upstream_uri,
            asked,
            tell,
            operation,
            outcome.decision.revision if outcome.decision is not None else None,
            session,
        )
        self._subscribers.setdefault((subscriber.upstream, subscriber.upstream_uri), set()).add(
            subscriber
        )
        return subscriber

    async def _release(self, subscriber: _Subscriber) -> None:
        if subscriber.ended:
            return  # ended by a policy change before its session or stream
        subscriber.ended = True
        key = (subscriber.upstream, subscriber.upstream_uri)
        subscribers = self._subscribers.get(key, set())
        subscribers.discard(subscriber)
        if not subscribers:
            self._subscribers.pop(key, None)
        client = self._pipeline.catalog.offerings_client(subscriber.upstream)
        if client is not None:
            await client.unsubscribe_resource(subscriber.upstream_uri, session=subscriber.session)

    async def _updated(self, upstream: str, upstream_uri: str, session: str | None) -> None:
        """An update on the shared connection (``session`` None) reaches every
        subscriber of the URI; one on a session's own upstream session, that session's
        alone."""
        for subscriber in list(self._subscribers.get((upstream, upstream_uri), ())):
            if session is not None and (
                subscriber.session is None or subscriber.session.id != session
            ):
                continue
            if not await self._still_allowed(subscriber):
                continue
            try:
                await subscriber.tell(subscriber.asked_uri)
            except Exception:  # a closed session: it is forgotten when it ends
                log.debug("resource update not sent to a subscriber", exc_info=True)

    async def _still_allowed(self, subscriber: _Subscriber) -> bool:
        """Whether the policy as it is now still allows the subscription: asked again
        once per subscription after each policy change, at its next update (at every
        update where the engine's revision does not follow the policy's changes). One it now
        refuses ends there (recorded by the pipeline), and the client hears no more of
        that URI; an engine or log that cannot answer withholds this update only."""
        decider = self._pipeline.decider
        revision = decider.revision
        if decider.revision_follows_policy and subscriber.revision == revision:
            return True
        again = replace(subscriber.operation, request_id=new_request_id())
        try:
            allowed = await self._pipeline.redecide(again)
        except RetryLater as exc:
            log.warning("resource update withheld: %s", exc.message)
            return False
        if allowed:
            subscriber.revision = revision
            return True
        log.info(
            "subscription to %s ended: the policy now refuses it (%s)",
            subscriber.asked_uri,
            again.request_id,
        )
        if subscriber.session is not None:
            mine = self._sessions.get(subscriber.session.id)
            if mine is not None and mine.by_uri.get(subscriber.asked_uri) is subscriber:
                del mine.by_uri[subscriber.asked_uri]
        await self._release(subscriber)
        return False

    async def _lists_changed(self, upstream: str, lists: frozenset[str]) -> None:
        for listener in list(self._listeners):
            if listener.upstream not in (None, upstream):
                continue
            for name in sorted(lists & listener.lists):
                listener.deliver(_LIST_EVENTS[name])
