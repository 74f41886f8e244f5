"""A 2025-11-25 test upstream that keeps state per session, and records what each of its
sessions was told, for the tests of calling sessions' own upstream sessions
(docs/decisions/0034).

    python -m tests.support.session_upstream NAME EVENT_LOG

Run over stdio, so each upstream session is a process of its own (its pid names it).
Every event appends one JSON line to EVENT_LOG: ``{"upstream", "pid", "event", …}``:

- ``roots``: the roots it was told (it asks once per session, as server-everything
  does, and again on ``notifications/roots/list_changed``: ``roots_changed``);
- ``set_level``: a ``logging/setLevel`` it received. With ``MEET_ON_SET_LEVEL`` in its
  environment it answers only once every upstream named there (comma-separated) has
  recorded a ``set_level`` too (``met``, else ``not_met`` after 30 s): an upstream that
  can only answer if the others were asked while it waits;
- ``subscribed``: a ``resources/subscribe``.

Tools: ``roots`` (the session's roots, asked at its first call), ``touch`` (sends
``notifications/resources/updated`` for ``test://doc`` when this session subscribed to
it), ``pid`` (this process's id, so a test can kill it), ``echo``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server

DOC = "test://doc"
NAME = sys.argv[1] if len(sys.argv) > 1 else "up"
EVENTS = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/dev/null")

# This process serves one session (stdio): its state is the session's.
_roots: list[str] | None = None
_subscribed: set[str] = set()


def record(event: str, **detail: Any) -> None:
    line = json.dumps({"upstream": NAME, "pid": os.getpid(), "event": event, **detail})
    with EVENTS.open("a") as log:
        log.write(line + "\n")


def events(path: Path) -> list[dict[str, Any]]:
    """The events recorded in ``path`` (for tests)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _ask_roots(ctx: ServerRequestContext[Any, Any], event: str) -> list[str]:
    global _roots
    answer = await ctx.session.list_roots()
    _roots = [str(root.uri) for root in answer.roots]
    record(event, roots=_roots)
    return _roots


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    return types.ListToolsResult(
        tools=[
            types.Tool(
                name=name, description=f"{name} (session test upstream)", input_schema=schema
            )
            for name in ("roots", "touch", "pid", "echo")
        ]
    )


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if params.name == "roots":
        roots = _roots if _roots is not None else await _ask_roots(ctx, "roots")
        return _text(" ".join(roots))
    if params.name == "touch":
        if DOC in _subscribed:
            await ctx.session.send_resource_updated(DOC)
        return _text("touched" if DOC in _subscribed else "not subscribed")
    if params.name == "pid":
        return _text(str(os.getpid()))
    return _text("echo")


async def list_nothing(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> dict[str, Any]:
    return {"prompts": []} if ctx.method == "prompts/list" else {"resourceTemplates": []}


async def list_resources(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=[types.Resource(uri=DOC, name="doc")])


async def read_resource(
    ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=str(params.uri), text="doc")]
    )


async def subscribe(
    ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
) -> types.EmptyResult:
    _subscribed.add(str(params.uri))
    record("subscribed", uri=str(params.uri))
    return types.EmptyResult()


async def unsubscribe(
    ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
) -> types.EmptyResult:
    _subscribed.discard(str(params.uri))
    return types.EmptyResult()


async def set_level(
    ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
) -> types.EmptyResult:
    record("set_level", level=params.level)
    others = [o for o in os.environ.get("MEET_ON_SET_LEVEL", "").split(",") if o]
    if others:
        # Waits for the others' set_level in the shared log: answered only if they
        # were asked while this one waits (bounded, so a sequential caller fails
        # visibly rather than hangs).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = {
                e["upstream"]
                for e in events(EVENTS)
                if e["event"] == "set_level" and e.get("level") == params.level
            }
            if set(others) <= seen:
                record("met", level=params.level)
                return types.EmptyResult()
            await anyio.sleep(0.02)
        record("not_met", level=params.level)
    return types.EmptyResult()


async def roots_changed(ctx: ServerRequestContext[Any, Any], params: Any) -> None:
    await _ask_roots(ctx, "roots_changed")


def build() -> Server[Any]:
    server: Server[Any] = Server(
        "session-upstream", on_list_tools=list_tools, on_call_tool=call_tool
    )
    server.add_request_handler("resources/list", types.PaginatedRequestParams, list_resources)
    server.add_request_handler("prompts/list", types.PaginatedRequestParams, list_nothing)
    server.add_request_handler(
        "resources/templates/list", types.PaginatedRequestParams, list_nothing
    )
    server.add_request_handler("resources/read", types.ReadResourceRequestParams, read_resource)
    server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    server.add_notification_handler(
        "notifications/roots/list_changed", types.NotificationParams, roots_changed
    )
    return server


async def main() -> None:
    # The handshake loop only: this upstream speaks 2025-11-25 (as server-everything
    # does), so the gateway reaches it on an upstream session per calling session.
    server = build()
    async with stdio_server() as (read, write), server.lifespan(server) as state:
        await serve_loop(
            server,
            read,
            write,
            lifespan_state=state,
            init_options=server.create_initialization_options(),
        )


if __name__ == "__main__":
    anyio.run(main)
