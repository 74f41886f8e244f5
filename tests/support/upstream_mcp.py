"""A test upstream MCP server that records every call it receives.

    python -m tests.support.upstream_mcp http PORT CALL_LOG
    python -m tests.support.upstream_mcp stdio CALL_LOG

Each tools/call appends one JSON line to CALL_LOG (tool, arguments, the Authorization
and W3C trace-context headers it saw, the request `_meta`), so tests can prove what
reached the upstream and what did not; so does each resource read and prompt get
(``tool`` is ``read:<uri>`` or ``prompt:<name>``).

Besides tools it offers resources (``test://static``, ``test://secret``,
``test://changing``), templates (``test://items/{id}``, ``test://hidden/{id}``),
prompts (``greet``, ``plan``, ``secret_prompt``) with completions, log messages
(``chatty``) and hooks that change a prompt's or a resource's definition and say the
lists changed (``set_prompt_description``, ``set_resource_description``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

server = MCPServer("test-upstream", version="1.0.0")
CALL_LOG = Path(os.environ.get("TEST_UPSTREAM_CALL_LOG", "/dev/null"))


def _record(ctx: Context, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    headers = ctx.headers or {}
    raw_meta: Any = ctx.request_context.meta or {}
    meta = raw_meta if isinstance(raw_meta, dict) else raw_meta.model_dump(by_alias=True)
    entry = {
        "tool": tool,
        "arguments": arguments,
        "authorization": headers.get("authorization"),
        "user_agent": headers.get("user-agent"),
        "traceparent": headers.get("traceparent"),
        "tracestate": headers.get("tracestate"),
        "param_headers": {k: v for k, v in headers.items() if k.lower().startswith("mcp-param-")},
        "meta": meta,
        "pid": os.getpid(),
    }
    with CALL_LOG.open("a") as log:
        log.write(json.dumps(entry) + "\n")
    return entry


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str, ctx: Context) -> str:
    """Returns the text."""
    _record(ctx, "echo", {"text": text})
    return text


@server.tool(annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False))
def write(key: str, value: str, ctx: Context) -> str:
    """Pretends to write a value (destructive)."""
    _record(ctx, "write", {"key": key, "value": value})
    return f"wrote {key}"


@server.tool()
def login(user: str, api_key: str, ctx: Context) -> str:
    """Takes a secret argument, which the audit log must never hold."""
    _record(ctx, "login", {"user": user, "api_key": api_key})
    return f"welcome {user}"


@server.tool()
def regional(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], ctx: Context
) -> str:
    """Takes an argument the client must mirror into an `Mcp-Param-Region` header."""
    _record(ctx, "regional", {"region": region})
    return f"served in {region}"


@server.tool()
def whoami(ctx: Context) -> dict[str, Any]:
    """Reports the credential and metadata the upstream received."""
    return _record(ctx, "whoami", {})


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleeps, reporting progress every 0.1 s."""
    _record(ctx, "slow", {"seconds": seconds})
    steps = max(1, round(seconds / 0.1))
    for step in range(steps):
        await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        await anyio.sleep(seconds / steps)
    return "done"


@server.tool()
def fail(ctx: Context) -> str:
    """Always fails as a tool (isError)."""
    _record(ctx, "fail", {})
    raise ToolError("the tool failed on purpose")


@server.tool()
def with_meta(ctx: Context) -> CallToolResult:
    """Returns a result carrying upstream `_meta`, which the gateway must drop."""
    _record(ctx, "with_meta", {})
    return CallToolResult(
        content=[TextContent(text="has meta", _meta={"upstream/secret": "content-level"})],
        structured_content={"ok": True},
        _meta={"upstream/secret": "result-level"},
    )


@server.tool()
def set_description(tool: str, description: str, ctx: Context) -> str:
    """Test hook for rug-pulls: changes another tool's description from now on."""
    _record(ctx, "set_description", {"tool": tool, "description": description})
    target = server._tool_manager.get_tool(tool)
    if target is None:
        raise ToolError(f"no tool {tool}")
    target.description = description
    return f"description of {tool} changed"


# --- resources, prompts, completions, logs, list changes -----------------------------


def _note(what: str, detail: dict[str, Any]) -> None:
    with CALL_LOG.open("a") as log:
        log.write(json.dumps({"tool": what, "arguments": detail, "pid": os.getpid()}) + "\n")


@server.resource("test://static", name="static", mime_type="text/plain")
def static_resource() -> str:
    _note("read:test://static", {})
    return "static contents"


@server.resource("test://secret", name="secret", mime_type="text/plain")
def secret_resource() -> str:
    _note("read:test://secret", {})
    return "secret contents"


@server.resource("test://changing", name="changing", description="A resource that changes")
def changing_resource() -> str:
    _note("read:test://changing", {})
    return "changing contents"


@server.resource("test://items/{id}", name="item", mime_type="text/plain")
def item(id: str) -> str:
    _note(f"read:test://items/{id}", {"id": id})
    return f"item {id}"


@server.resource("test://hidden/{id}", name="hidden")
def hidden(id: str) -> str:
    _note(f"read:test://hidden/{id}", {"id": id})
    return f"hidden {id}"


@server.prompt()
def greet(name: str, style: str = "plain") -> str:
    """Greets someone."""
    _note("prompt:greet", {"name": name, "style": style})
    return f"Say hello to {name}, {style} style."


@server.prompt()
def plan(goal: str) -> str:
    """Plans towards a goal."""
    _note("prompt:plan", {"goal": goal})
    return f"Plan the steps to {goal}."


@server.prompt()
def secret_prompt(topic: str) -> str:
    """Not for agents."""
    _note("prompt:secret_prompt", {"topic": topic})
    return f"The secret about {topic}."


@server.completion()
async def complete(
    ref: types.PromptReference | types.ResourceTemplateReference,
    argument: types.CompletionArgument,
    context: types.CompletionContext | None,
) -> types.Completion | None:
    options = {
        ("greet", "style"): ["formal", "friendly", "plain"],
        ("secret_prompt", "topic"): ["everything"],
        ("test://items/{id}", "id"): ["1", "2", "3"],
        ("test://hidden/{id}", "id"): ["9"],
    }
    key = ref.name if isinstance(ref, types.PromptReference) else ref.uri
    values = [v for v in options.get((key, argument.name), []) if v.startswith(argument.value)]
    return types.Completion(values=values, total=len(values), has_more=False)


@server.tool()
async def chatty(text: str, ctx: Context) -> str:
    """Logs three messages (info, warning, debug) while it runs, then returns the text."""
    _record(ctx, "chatty", {"text": text})
    await ctx.info(f"first {text}")
    await ctx.warning(f"second {text}")
    await ctx.debug(f"third {text}")
    return text


@server.tool()
async def set_prompt_description(prompt: str, description: str, ctx: Context) -> str:
    """Test hook for rug-pulls: changes a prompt's description and says prompts changed."""
    _record(ctx, "set_prompt_description", {"prompt": prompt, "description": description})
    target = server._prompt_manager.get_prompt(prompt)
    if target is None:
        raise ToolError(f"no prompt {prompt}")
    target.description = description
    await ctx.notify_prompts_changed()
    return f"description of prompt {prompt} changed"


@server.tool()
async def set_resource_description(uri: str, description: str, ctx: Context) -> str:
    """Test hook for rug-pulls: changes a resource's description and says resources changed."""
    _record(ctx, "set_resource_description", {"uri": uri, "description": description})
    target = server._resource_manager._resources.get(uri)
    if target is None:
        raise ToolError(f"no resource {uri}")
    target.description = description
    await ctx.notify_resources_changed()
    return f"description of resource {uri} changed"


# --- tools for the executor's tests: effects applied once per idempotency key --------
# The server process is the single source of truth for which keys were applied (one
# process serves every gateway and worker in a test); each application is also written
# to CALL_LOG.effects.jsonl so tests can count effects from outside.
_EFFECTS: dict[str, dict[str, Any]] = {}
_ATTEMPTS: dict[str, int] = {}
IDEMPOTENCY_META = "io.agentgateway/idempotency-key"


def _idempotency_key(ctx: Context) -> str | None:
    raw_meta: Any = ctx.request_context.meta or {}
    meta = raw_meta if isinstance(raw_meta, dict) else raw_meta.model_dump(by_alias=True)
    key = meta.get(IDEMPOTENCY_META)
    return key if isinstance(key, str) else None


@server.tool(annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False))
async def effect(label: str, ctx: Context, delay_s: float = 0.0) -> dict[str, Any]:
    """Applies an effect once per idempotency key (a repeat returns the first result)."""
    key = _idempotency_key(ctx) or f"no-key:{len(_EFFECTS)}"
    _record(ctx, "effect", {"label": label, "delay_s": delay_s})
    if delay_s:
        await anyio.sleep(delay_s)
    if key in _EFFECTS:
        return {**_EFFECTS[key], "replayed": True}
    result = {"label": label, "key": key, "seq": len(_EFFECTS) + 1, "replayed": False}
    _EFFECTS[key] = result
    _log_effect(result)
    return result


def _log_effect(result: dict[str, Any]) -> None:
    with Path(str(CALL_LOG) + ".effects.jsonl").open("a") as log:
        log.write(json.dumps(result) + "\n")


_GATHERINGS: dict[str, tuple[list[int], anyio.Event]] = {}


@server.tool()
async def rendezvous(group: str, count: int, ctx: Context) -> str:
    """Answers once ``count`` calls naming ``group`` have arrived: whoever gets an answer
    knows they were all in flight at the same time, however slow the machine. (A call
    whose partners never come waits until its caller gives up.)"""
    _record(ctx, "rendezvous", {"group": group, "count": count})
    arrived, everyone = _GATHERINGS.setdefault(group, ([0], anyio.Event()))
    arrived[0] += 1
    if arrived[0] >= count:
        everyone.set()
    await everyone.wait()
    return f"{count} met"


@server.tool()
def flaky(fail_times: int, ctx: Context) -> dict[str, Any]:
    """Fails (isError) the first ``fail_times`` calls per idempotency key, then succeeds."""
    key = _idempotency_key(ctx) or "no-key"
    _record(ctx, "flaky", {"fail_times": fail_times})
    _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
    if _ATTEMPTS[key] <= fail_times:
        raise ToolError(f"failure {_ATTEMPTS[key]} of {fail_times}")
    return {"attempts": _ATTEMPTS[key]}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "stdio":
        CALL_LOG = Path(sys.argv[2])
        server.run("stdio")
    else:
        CALL_LOG = Path(sys.argv[3])
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            streamable_http_path="/mcp",
            stateless_http=True,
        )
