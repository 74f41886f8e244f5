"""The same interactions as tests/peers/clients/ts_v2_client.mjs, with the Python SDK's
client (mcp 2.x): one case per MCP feature, against server-everything behind the gateway.

Each case finds what it uses by listing first, so it runs on the aggregated ``/mcp``
(tool names carry the ``<upstream>__`` prefix) and on ``/mcp/{upstream}`` alike, and
returns what it saw. Every wait is bounded by `DEADLINE_S`; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

DEADLINE_S = 15
# Starts of server-everything's simulated logging a 2026-07-28 logging case may take.
LOG_ATTEMPTS = 3
CASES = (
    "tools",
    "resources",
    "subscribe",
    "prompts",
    "completion",
    "logging",
    "elicitation",
    "sampling",
    "roots",
)


class CaseFailed(AssertionError):
    pass


class _Seen:
    def __init__(self) -> None:
        self.elicitation: list[str] = []
        self.sampling = 0
        self.roots = 0
        self.notifications: list[Any] = []
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.changed = anyio.Event()

    def note(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, what: str, found: Callable[[], Any]) -> Any:
        with anyio.move_on_after(DEADLINE_S):
            while not (value := found()):
                await self.changed.wait()
            return value
        raise CaseFailed(f"no {what} within {DEADLINE_S} s")


async def run_case(url: str, token: str, mode: str, case: str, prefix: str = "") -> dict[str, Any]:
    seen = _Seen()

    async def elicit(ctx: Any, params: Any) -> types.ElicitResult:
        seen.elicitation.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async def sample(ctx: Any, params: Any) -> types.CreateMessageResult:
        seen.sampling += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(text="sampled by the test client"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def roots(ctx: Any) -> types.ListRootsResult:
        seen.roots += 1
        return types.ListRootsResult(
            roots=[types.Root(uri="file:///workspace/gateway-test", name="gateway-test")]
        )

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.logs.append(params)
        seen.note()

    async def on_message(message: Any) -> None:
        seen.notifications.append(message)
        seen.note()

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with (
        http,
        Client(
            streamable_http_client(url, http_client=http),
            mode=mode,  # type: ignore[arg-type]
            cache=None,
            elicitation_callback=elicit,
            sampling_callback=sample,
            list_roots_callback=roots,
            logging_callback=on_log,
            message_handler=on_message,
            log_level="debug" if case == "logging" and mode != "legacy" else None,
            read_timeout_seconds=DEADLINE_S,
        ) as client,
    ):
        runner = _Case(client, prefix, mode, seen)
        return {"era": client.session.protocol_version, **await runner.run(case)}


class _Case:
    def __init__(self, client: Client, prefix: str, mode: str, seen: _Seen) -> None:
        self.client = client
        self.prefix = prefix
        self.legacy = mode == "legacy"
        self.seen = seen

    async def run(self, case: str) -> dict[str, Any]:
        method: Callable[[], Awaitable[dict[str, Any]]] = getattr(self, case)
        return await method()

    async def call(self, suffix: str, arguments: dict[str, Any] | None = None) -> str:
        names = [t.name for t in (await self.client.list_tools()).tools]
        if self.prefix + suffix not in names:
            raise CaseFailed(f"no tool {self.prefix + suffix} in {names}")
        result = await self.client.call_tool(self.prefix + suffix, arguments or {})
        text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
        if result.is_error:
            raise CaseFailed(f"{suffix} failed: {text}")
        return text

    async def prompt(self, suffix: str) -> str:
        names = [p.name for p in (await self.client.list_prompts()).prompts]
        found = [n for n in names if n.endswith(suffix)]
        if not found:
            raise CaseFailed(f"no prompt *{suffix} in {names}")
        return found[0]

    async def first_resource(self) -> str:
        resources = (await self.client.list_resources()).resources
        if not resources:
            raise CaseFailed("no resources listed")
        return str(resources[0].uri)

    async def tools(self) -> dict[str, Any]:
        tools = (await self.client.list_tools()).tools
        return {
            "tools": [t.name for t in tools],
            "echo": await self.call("echo", {"message": "hello from python"}),
            "sum": await self.call("get-sum", {"a": 2, "b": 3}),
        }

    async def resources(self) -> dict[str, Any]:
        uri = await self.first_resource()
        templates = (await self.client.list_resource_templates()).resource_templates
        read = await self.client.read_resource(uri)
        return {
            "templates": [t.uri_template for t in templates],
            "read": [str(c.uri) for c in read.contents],
        }

    async def subscribe(self) -> dict[str, Any]:
        uri = await self.first_resource()

        def updated() -> bool:
            return any(
                isinstance(n, types.ResourceUpdatedNotification) and str(n.params.uri) == uri
                for n in self.seen.notifications
            )

        async def toggle_until_updated() -> None:
            if "Stopped" in await self.call("toggle-subscriber-updates"):
                await self.call("toggle-subscriber-updates")
            await self.seen.until("notifications/resources/updated", updated)

        if self.legacy:
            await self.client.subscribe_resource(uri)
            await toggle_until_updated()
        else:
            async with self.client.listen(resource_subscriptions=[uri]) as subscription:
                if "Stopped" in await self.call("toggle-subscriber-updates"):
                    await self.call("toggle-subscriber-updates")
                with anyio.fail_after(DEADLINE_S):
                    async for event in subscription:
                        if str(getattr(event, "uri", "")) == uri:
                            break
        return {"subscribed": uri}

    async def prompts(self) -> dict[str, Any]:
        simple = await self.client.get_prompt(await self.prompt("simple-prompt"))
        args = await self.client.get_prompt(await self.prompt("args-prompt"), {"city": "Paris"})
        return {
            "simple": len(simple.messages),
            "args": "Paris" in args.model_dump_json(),
        }

    async def completion(self) -> dict[str, Any]:
        name = await self.prompt("completable-prompt")
        result = await self.client.complete(
            types.PromptReference(name=name), {"name": "department", "value": "E"}
        )
        return {"values": result.completion.values}

    async def logging(self) -> dict[str, Any]:
        if self.legacy:
            await self.client.set_logging_level("debug")
            await self.start_simulated_logging()
            logs = await self.seen.until("notifications/message", lambda: self.seen.logs)
            return {"level": logs[0].level}
        # 2026-07-28: the client asked for logs on every request (log_level); the gateway
        # relays a message its upstream session sends while the call is in flight on the
        # call's own stream, before the result, so after one more round trip every such
        # message has been handled: no waiting. server-everything sends its first message
        # when logging starts, but on its session's stream of unrelated messages, while
        # the result goes on the call's own connection: over HTTP the result can reach
        # the gateway first, and the message then belongs to no request (it is dropped,
        # as it would be at the upstream with no stream open). Starting it again sends
        # another, a bounded number of times.
        for _ in range(LOG_ATTEMPTS):
            await self.start_simulated_logging()
            await self.client.list_tools()
            if self.seen.logs:
                return {"level": self.seen.logs[0].level}
        raise CaseFailed(f"no notifications/message on the call's stream in {LOG_ATTEMPTS} starts")

    async def start_simulated_logging(self) -> None:
        """server-everything's logging toggles per session: on, whatever it was before."""
        if "Stopped" in await self.call("toggle-simulated-logging"):
            await self.call("toggle-simulated-logging")

    async def elicitation(self) -> dict[str, Any]:
        result = await self.call("trigger-elicitation-request")
        return {"asked": len(self.seen.elicitation), "result": result}

    async def sampling(self) -> dict[str, Any]:
        result = await self.call("trigger-sampling-request", {"prompt": "Say hi", "maxTokens": 20})
        return {"asked": self.seen.sampling, "result": result}

    async def roots(self) -> dict[str, Any]:
        result = await self.call("get-roots-list")
        return {"asked": self.seen.roots, "result": result}
